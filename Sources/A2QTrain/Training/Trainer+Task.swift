import A2QCore
import A2QData

/// The run's task and its data, chosen by the model's description.
extension Trainer {
    /// Classification data from `--data` (or `data`, tests), or, for a restoration model, the
    /// image folder `--data` (default: the photo set `Launch/setup-images.sh` prepares) cut into
    /// crops of `--crop-size` for the model's upscale factor.
    static func loadTask(_ config: TrainConfig, data: (train: Dataset, test: Dataset)?) throws -> any TrainingTask {
        let description = try ModelBuilder.description(of: config.model)
        switch description.task {
        case .classification:
            let (fullTrain, test) = try data ?? DataSource(argument: config.data).load()
            let train = config.trainSubset.map { fullTrain.prefix($0) } ?? fullTrain
            try test.requireImageSize(height: fullTrain.height, width: fullTrain.width, channels: fullTrain.channels,
                                      source: "\(config.data) (test images, against the training images)")
            return ClassificationTask(train: train, test: test)
        case .restoration:
            guard config.trainSubset == nil else {
                throw A2QError("--train-subset picks classification images; a restoration run takes --crops-per-image", remedy: "leave --train-subset out")
            }
            let factor = try ModelBuilder.upscaleFactor(of: description, config: config)
            let folder = config.data == DataSource.defaultFolder ? RestorationData.defaultFolder : config.data
            return try RestorationTask.load(folder: folder, factor: factor, cropSize: config.cropSize,
                                            cropsPerImage: config.cropsPerImage, seed: config.seed)
        }
    }
}
