//! The inference engine: one dedicated OS thread per device (never the async reactor), fed by
//! a bounded channel. Jobs for the same model, input size and frame count share a forward pass:
//! a batch closes when it holds the model's `batch.max` jobs (capped by the engine's own
//! `max_batch`) or when its first job has waited `max_wait`. A failing batch is split so each
//! job keeps its own result (`split.rs`).
//!
//! A detector's request (a framing model: one photo in, face boxes out) is not batched: the
//! inference thread runs it as soon as it arrives, between batches. So is a session's training
//! (`personalize`: the base model renders the session's photos once, then the adapter takes its
//! gradient steps, a few seconds on a CPU): other jobs wait for it, as for a batch. A job with a
//! session's adapter shares its pass with every other job of the model; its adapter runs on its
//! own output after the pass.
//!
//! On the CPU a second thread turns each pass's float video into 8-bit frames while the
//! inference thread runs the next pass: that conversion (~1 % of a `cost` pass) is not the
//! model's work, and on a CPU node the inference thread is the device. On a GPU it is rounded on
//! the device, and only the bytes come back.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use tch::{Device, Tensor};
use tokio::sync::oneshot;
use tracing::{debug, warn};

use crate::VideoModel;
use crate::adapter::{Adapter, AdapterScope, TrainingReport, train};
use crate::registry::ModelRegistry;
use crate::split::run_splitting;
use crate::{
    FaceBox, InferError, InferErrorKind, PARAMS_LEN, RgbFrame, frames_to_batch, video_to_frames,
};
use clipfleet_models::ModelRole;
use clipfleet_models::ModelSpec;

/// Most jobs in any batch the engine forms (the histogram's size, too).
pub const MAX_BATCH_LIMIT: usize = 64;

/// How the engine batches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EngineConfig {
    /// Most jobs per forward pass (further capped by each model's `batch.max`).
    pub max_batch: usize,
    /// Longest a job waits for others to share its pass.
    pub max_wait: Duration,
    /// Jobs queued for the engine before `generate` waits (backpressure on the fetch stage).
    pub queue_capacity: usize,
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            max_batch: 8,
            max_wait: Duration::from_millis(20),
            queue_capacity: 64,
        }
    }
}

/// One job for the engine.
#[derive(Debug)]
pub struct GenerateRequest {
    /// Manifest name.
    pub model: String,
    /// Manifest version.
    pub version: String,
    /// The photo, already fitted to the model's input size.
    pub image: RgbFrame,
    /// Per-job parameters (see `models/README.md`).
    pub params: [f32; PARAMS_LEN],
    /// Frames to generate.
    pub frames: u32,
    /// The session's personalised adapter, run on this job's output after the pass (already
    /// checked against the job's scope by the caller).
    pub adapter: Option<Arc<Adapter>>,
}

/// A session's training: its photos in, its adapter of `model` out.
#[derive(Debug)]
pub struct PersonalizeRequest {
    /// Manifest name of an entry with an `adapter`.
    pub model: String,
    /// Its version.
    pub version: String,
    /// The session's photos, each fitted to the adapter's `train_size` square.
    pub photos: Vec<RgbFrame>,
    /// The model's params for each photo (its focus, as a job of the photo would have).
    pub params: Vec<[f32; PARAMS_LEN]>,
    /// Whom the adapter is for.
    pub scope: AdapterScope,
    /// Seeds the adapter's initial weights.
    pub seed: u64,
}

/// One photo for a detector model (a model's `framing`).
#[derive(Debug)]
pub struct DetectRequest {
    /// Manifest name of a `detector` entry.
    pub model: String,
    /// Its version.
    pub version: String,
    /// The photo, scaled to fit the detector's input box.
    pub image: RgbFrame,
}

type Reply = oneshot::Sender<Result<Vec<RgbFrame>, InferError>>;

struct Pending {
    request: GenerateRequest,
    reply: Reply,
}

struct Detection {
    request: DetectRequest,
    reply: oneshot::Sender<Result<Vec<FaceBox>, InferError>>,
}

struct Training {
    request: PersonalizeRequest,
    reply: oneshot::Sender<Result<(Adapter, TrainingReport), InferError>>,
}

/// What the inference thread is asked to do.
enum Work {
    Generate(Pending),
    Detect(Detection),
    Personalize(Training),
}

/// What a pass produced for one job.
enum Output {
    /// Frames ready to hand over (a device's video, rounded there).
    Frames(Vec<RgbFrame>),
    /// The job's `float32[T, 3, H, W]` view of a CPU pass's video, still to round.
    Video(Tensor),
}

/// A pass's jobs with their outputs, for the answering thread.
type Finished = Vec<(Reply, Result<Output, InferError>)>;

/// Jobs that may share a forward pass.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct BatchKey {
    model: String,
    version: String,
    width: u32,
    height: u32,
    frames: u32,
}

impl Pending {
    fn key(&self) -> BatchKey {
        BatchKey {
            model: self.request.model.clone(),
            version: self.request.version.clone(),
            width: self.request.image.width,
            height: self.request.image.height,
            frames: self.request.frames,
        }
    }
}

/// Counters the worker exports as metrics.
#[derive(Debug)]
pub struct EngineStats {
    /// Forward passes by batch size (index = size; retries after a split count too).
    passes_by_size: [AtomicU64; MAX_BATCH_LIMIT + 1],
    /// Jobs answered.
    jobs: AtomicU64,
    /// Microseconds the inference thread spent on passes (the batch in, the forward pass, and
    /// on a device the video back as bytes).
    busy_us: AtomicU64,
    /// Time in each stage of the chains run and in each detector, by `name@version`.
    stages: Mutex<BTreeMap<String, Duration>>,
}

impl EngineStats {
    fn new() -> Self {
        EngineStats {
            passes_by_size: std::array::from_fn(|_| AtomicU64::new(0)),
            jobs: AtomicU64::new(0),
            busy_us: AtomicU64::new(0),
            stages: Mutex::new(BTreeMap::new()),
        }
    }

    fn add_stage(&self, model: &str, took: Duration) {
        let mut stages = self.stages.lock().unwrap_or_else(PoisonError::into_inner);
        *stages.entry(model.to_owned()).or_default() += took;
    }

    /// Time spent in each stage of the chains run so far and in each detector, by
    /// `name@version`.
    pub fn stage_busy(&self) -> Vec<(String, Duration)> {
        let stages = self.stages.lock().unwrap_or_else(PoisonError::into_inner);
        stages.iter().map(|(k, v)| (k.clone(), *v)).collect()
    }

    /// Forward passes run, by batch size.
    pub fn passes_by_size(&self) -> Vec<(usize, u64)> {
        self.passes_by_size
            .iter()
            .enumerate()
            .map(|(size, n)| (size, n.load(Ordering::Relaxed)))
            .filter(|(_, n)| *n > 0)
            .collect()
    }

    /// Jobs answered.
    pub fn jobs(&self) -> u64 {
        self.jobs.load(Ordering::Relaxed)
    }

    /// Time the inference thread spent on passes.
    pub fn busy(&self) -> Duration {
        Duration::from_micros(self.busy_us.load(Ordering::Relaxed))
    }
}

/// Handle to the inference thread. Dropping every handle stops the thread once its queue is
/// empty.
#[derive(Debug, Clone)]
pub struct Engine {
    queue: flume::Sender<Work>,
    stats: Arc<EngineStats>,
    thread: Arc<JoinHandle<()>>,
}

impl std::fmt::Debug for Pending {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Pending({}@{})",
            self.request.model, self.request.version
        )
    }
}

impl Engine {
    /// Starts the inference thread with the loaded models, and the thread that answers its
    /// jobs (ends when the inference thread does).
    pub fn start(registry: ModelRegistry, config: EngineConfig) -> Result<Self, InferError> {
        let (queue, jobs) = flume::bounded(config.queue_capacity.max(1));
        // Two passes may wait to be answered: past that the inference thread waits too.
        let (finished, to_answer) = flume::bounded::<Finished>(2);
        let stats = Arc::new(EngineStats::new());
        let start_error = |what: &str, err: std::io::Error| {
            InferError::new(InferErrorKind::ModelLoad, format!("start {what}: {err}"))
        };
        let answer_stats = stats.clone();
        std::thread::Builder::new()
            .name("clip-infer-out".into())
            .spawn(move || answer(&to_answer, &answer_stats))
            .map_err(|err| start_error("the thread that answers jobs", err))?;
        let thread_stats = stats.clone();
        let thread = std::thread::Builder::new()
            .name("clip-infer".into())
            .spawn(move || run(&registry, config, &jobs, &finished, &thread_stats))
            .map_err(|err| start_error("inference thread", err))?;
        Ok(Engine {
            queue,
            stats,
            thread: Arc::new(thread),
        })
    }

    /// Generates one job's video frames, sharing a forward pass with compatible jobs.
    pub async fn generate(&self, request: GenerateRequest) -> Result<Vec<RgbFrame>, InferError> {
        let (reply, answer) = oneshot::channel();
        self.ask(Work::Generate(Pending { request, reply }), answer)
            .await
    }

    /// The faces a detector finds in one photo (run between batches, never batched). The boxes
    /// are the caller's to keep in memory only (see [`FaceBox`]).
    pub async fn detect(&self, request: DetectRequest) -> Result<Vec<FaceBox>, InferError> {
        let (reply, answer) = oneshot::channel();
        self.ask(Work::Detect(Detection { request, reply }), answer)
            .await
    }

    /// Trains a session's adapter of a model on its photos (run between batches, never
    /// batched); the adapter and what the training did come back.
    pub async fn personalize(
        &self,
        request: PersonalizeRequest,
    ) -> Result<(Adapter, TrainingReport), InferError> {
        let (reply, answer) = oneshot::channel();
        self.ask(Work::Personalize(Training { request, reply }), answer)
            .await
    }

    /// Queues `work` for the inference thread and waits for its `answer`.
    async fn ask<T>(
        &self,
        work: Work,
        answer: oneshot::Receiver<Result<T, InferError>>,
    ) -> Result<T, InferError> {
        self.queue
            .send_async(work)
            .await
            .map_err(|_| InferError::new(InferErrorKind::ModelError, "inference thread stopped"))?;
        answer.await.map_err(|_| {
            InferError::new(
                InferErrorKind::ModelError,
                "inference thread dropped the request",
            )
        })?
    }

    /// The engine's counters.
    pub fn stats(&self) -> &EngineStats {
        &self.stats
    }

    /// Whether the inference thread is still running.
    pub fn is_running(&self) -> bool {
        !self.thread.is_finished()
    }
}

struct OpenBatch {
    key: BatchKey,
    jobs: Vec<Pending>,
    /// When its first job has waited long enough.
    due: Instant,
}

fn run(
    registry: &ModelRegistry,
    config: EngineConfig,
    jobs: &flume::Receiver<Work>,
    finished: &flume::Sender<Finished>,
    stats: &EngineStats,
) {
    let mut open: Vec<OpenBatch> = Vec::new();
    let limits: HashMap<(String, String), usize> = registry
        .specs()
        .map(|spec| ((spec.name.clone(), spec.version.clone()), spec.batch.max))
        .collect();
    let limit = |key: &BatchKey| {
        let model = limits
            .get(&(key.model.clone(), key.version.clone()))
            .copied()
            .unwrap_or(1);
        model.min(config.max_batch).clamp(1, MAX_BATCH_LIMIT)
    };
    loop {
        let now = Instant::now();
        // Run the batch that is full, or the one due first.
        let ready = open
            .iter()
            .enumerate()
            .filter(|(_, b)| b.jobs.len() >= limit(&b.key) || b.due <= now)
            .min_by_key(|(_, b)| b.due)
            .map(|(i, _)| i);
        if let Some(index) = ready {
            let batch = open.swap_remove(index);
            run_batch(registry, batch, finished, stats);
            continue;
        }
        let received = match open.iter().map(|b| b.due).min() {
            Some(due) => jobs
                .recv_deadline(due)
                .map_err(|err| matches!(err, flume::RecvTimeoutError::Disconnected)),
            None => jobs.recv().map_err(|_| true),
        };
        match received {
            Ok(Work::Detect(detection)) => {
                let started = Instant::now();
                let result = run_detection(registry, &detection.request);
                let took = started.elapsed();
                stats.busy_us.fetch_add(
                    u64::try_from(took.as_micros()).unwrap_or(u64::MAX),
                    Ordering::Relaxed,
                );
                stats.add_stage(
                    &format!("{}@{}", detection.request.model, detection.request.version),
                    took,
                );
                // The caller may have gone: the boxes are dropped with the reply.
                let _ = detection.reply.send(result);
            }
            Ok(Work::Personalize(training)) => {
                let started = Instant::now();
                let result = run_training(registry, &training.request);
                let took = started.elapsed();
                stats.busy_us.fetch_add(
                    u64::try_from(took.as_micros()).unwrap_or(u64::MAX),
                    Ordering::Relaxed,
                );
                stats.add_stage(
                    &format!(
                        "{}@{} adapter",
                        training.request.model, training.request.version
                    ),
                    took,
                );
                let _ = training.reply.send(result);
            }
            Ok(Work::Generate(job)) => {
                let key = job.key();
                match open.iter_mut().find(|b| b.key == key) {
                    Some(batch) => batch.jobs.push(job),
                    None => open.push(OpenBatch {
                        key,
                        jobs: vec![job],
                        due: Instant::now() + config.max_wait,
                    }),
                }
            }
            Err(false) => {} // a deadline passed: the loop runs the due batch
            Err(true) => {
                for batch in open.drain(..) {
                    run_batch(registry, batch, finished, stats);
                }
                debug!("inference thread stopping: no more senders");
                return;
            }
        }
    }
}

fn run_batch(
    registry: &ModelRegistry,
    batch: OpenBatch,
    finished: &flume::Sender<Finished>,
    stats: &EngineStats,
) {
    let OpenBatch { key, jobs, .. } = batch;
    let target = match (
        registry.get(&key.model, &key.version),
        registry.chain(&key.model, &key.version),
    ) {
        (Some(loaded), _) if loaded.spec.is_servable() => Target::Model(&loaded.model),
        (None, Some(chain)) => Target::Chain(chain),
        _ => {
            for job in jobs {
                let message = format!("model {}@{} is not served here", key.model, key.version);
                let _ = job
                    .reply
                    .send(Err(InferError::new(InferErrorKind::InvalidInput, message)));
            }
            return;
        }
    };
    let device = registry.device();
    let on_cpu = device == Device::Cpu;
    let mut passes = Vec::new();
    let started = Instant::now();
    let results = run_splitting(
        &jobs,
        &mut |slice: &[Pending]| {
            let frames: Vec<&RgbFrame> = slice.iter().map(|p| &p.request.image).collect();
            let images = frames_to_batch(&frames, device)?;
            let flat: Vec<f32> = slice.iter().flat_map(|p| p.request.params).collect();
            let params = Tensor::from_slice(&flat)
                .f_view([slice.len() as i64, PARAMS_LEN as i64])
                .map_err(|err| InferError::from_tch("params", err, InferErrorKind::InvalidInput))?;
            let video = match target {
                Target::Model(model) => model.generate(&images, &params, i64::from(key.frames))?,
                Target::Chain(chain) => {
                    run_chain(registry, chain, &images, &params, key.frames, stats)?
                }
            };
            let video = with_adapters(slice, video)?;
            if !on_cpu {
                return Ok(video_to_frames(&video)?
                    .into_iter()
                    .map(Output::Frames)
                    .collect());
            }
            let size = video.size();
            if size.first() != Some(&(slice.len() as i64)) {
                return Err(InferError::new(
                    InferErrorKind::ModelError,
                    format!("a batch of {} gave a video of {size:?}", slice.len()),
                ));
            }
            (0..slice.len() as i64)
                .map(|job| {
                    video.f_get(job).map(Output::Video).map_err(|err| {
                        InferError::from_tch("split the video", err, InferErrorKind::ModelError)
                    })
                })
                .collect()
        },
        &mut passes,
    );
    stats.busy_us.fetch_add(
        u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX),
        Ordering::Relaxed,
    );
    for size in &passes {
        stats.passes_by_size[(*size).min(MAX_BATCH_LIMIT)].fetch_add(1, Ordering::Relaxed);
    }
    if passes.len() > 1 {
        warn!(model = %key.model, batch = jobs.len(), passes = passes.len(), "batch split after a failure");
    }
    let answers = jobs.into_iter().map(|job| job.reply).zip(results).collect();
    // Fails only if the answering thread is gone: the jobs' callers then hear that the engine
    // dropped them.
    let _ = finished.send(answers);
}

/// Runs each job's session adapter, if any, on its own video of the pass.
fn with_adapters(slice: &[Pending], video: Tensor) -> Result<Tensor, InferError> {
    if slice.iter().all(|p| p.request.adapter.is_none()) {
        return Ok(video);
    }
    let split = |err| InferError::from_tch("split the video", err, InferErrorKind::ModelError);
    let videos = slice
        .iter()
        .enumerate()
        .map(|(index, pending)| {
            let own = video.f_get(index as i64).map_err(split)?;
            match &pending.request.adapter {
                Some(adapter) => adapter.apply(&own),
                None => Ok(own),
            }
        })
        .collect::<Result<Vec<_>, InferError>>()?;
    Tensor::f_stack(&videos, 0).map_err(split)
}

/// A session's photos through its base model once, then the adapter's training.
fn run_training(
    registry: &ModelRegistry,
    request: &PersonalizeRequest,
) -> Result<(Adapter, TrainingReport), InferError> {
    let invalid = |message: String| InferError::new(InferErrorKind::InvalidInput, message);
    let loaded = registry
        .get(&request.model, &request.version)
        .filter(|loaded| loaded.spec.is_servable())
        .ok_or_else(|| {
            invalid(format!(
                "model {}@{} is not served here",
                request.model, request.version
            ))
        })?;
    let spec = loaded.spec.adapter.ok_or_else(|| {
        invalid(format!(
            "model {}@{} takes no personalised adapter",
            request.model, request.version
        ))
    })?;
    if request.photos.is_empty() || request.params.len() != request.photos.len() {
        return Err(invalid(
            "training needs photos, each with its params".into(),
        ));
    }
    let device = registry.device();
    let photos = frames_to_batch(&request.photos, device)?;
    let flat: Vec<f32> = request.params.iter().flatten().copied().collect();
    let params = Tensor::from_slice(&flat)
        .f_view([request.photos.len() as i64, PARAMS_LEN as i64])
        .map_err(|err| InferError::from_tch("params", err, InferErrorKind::InvalidInput))?;
    // The frozen base model's rendering: [N, 1, 3, S, S] -> [N, 3, S, S].
    let base = loaded
        .model
        .generate(&photos, &params, 1)?
        .f_select(1, 0)
        .and_then(|t| t.f_contiguous())
        .map_err(|err| {
            InferError::from_tch("the base rendering", err, InferErrorKind::ModelError)
        })?;
    let photos = photos
        .f_contiguous()
        .map_err(|err| InferError::from_tch("photos", err, InferErrorKind::InvalidInput))?;
    train(&spec, request.scope.clone(), &photos, &base, request.seed)
}

/// One photo through a detector entry.
fn run_detection(
    registry: &ModelRegistry,
    request: &DetectRequest,
) -> Result<Vec<FaceBox>, InferError> {
    let loaded = registry
        .get(&request.model, &request.version)
        .filter(|loaded| loaded.spec.role == ModelRole::Detector)
        .ok_or_else(|| {
            InferError::new(
                InferErrorKind::InvalidInput,
                format!(
                    "detector {}@{} is not served here",
                    request.model, request.version
                ),
            )
        })?;
    let image = frames_to_batch(&[&request.image], registry.device())?;
    loaded.model.detect(&image)
}

/// What a batch runs on: one TorchScript generator, or a chain of entries.
#[derive(Clone, Copy)]
enum Target<'a> {
    Model(&'a VideoModel),
    Chain(&'a ModelSpec),
}

/// A chain's video for a batch: the generator's keyframes, then each interpolator's frames
/// between them, every stage batched across the batch's jobs.
fn run_chain(
    registry: &ModelRegistry,
    chain: &ModelSpec,
    images: &Tensor,
    params: &Tensor,
    frames: u32,
    stats: &EngineStats,
) -> Result<Tensor, InferError> {
    let keyframes = chain.keyframes_for(frames).ok_or_else(|| {
        InferError::new(
            InferErrorKind::InvalidInput,
            format!(
                "{} cannot make {frames} frames: its stages make (keyframes - 1) x factor + 1",
                chain.key()
            ),
        )
    })?;
    let stage = |index: usize| {
        let stage = &chain.chain[index];
        registry.get(&stage.model, &stage.version).ok_or_else(|| {
            InferError::new(
                InferErrorKind::ModelLoad,
                format!("{}: stage {} is not loaded", chain.key(), stage.key()),
            )
        })
    };
    let started = Instant::now();
    let generator = stage(0)?;
    let mut video = generator
        .model
        .generate(images, params, i64::from(keyframes))?;
    stats.add_stage(&generator.spec.key(), started.elapsed());
    for (index, step) in chain.chain.iter().enumerate().skip(1) {
        let started = Instant::now();
        let interpolator = stage(index)?;
        video = interpolate_video(
            &interpolator.model,
            &video,
            i64::from(step.factor.unwrap_or(1)),
            interpolator.spec.batch.max,
        )?;
        stats.add_stage(&interpolator.spec.key(), started.elapsed());
    }
    Ok(video)
}

/// `video` (`[B, K, 3, H, W]`) with `factor - 1` frames between each pair of its frames:
/// `[B, (K - 1) x factor + 1, 3, H, W]`. The in-between frames of every job go through the
/// interpolator together, `per_pass` at a time.
fn interpolate_video(
    model: &VideoModel,
    video: &Tensor,
    factor: i64,
    per_pass: usize,
) -> Result<Tensor, InferError> {
    let tch_error = |what: &str| {
        let what = what.to_owned();
        move |err| InferError::from_tch(&what, err, InferErrorKind::ModelError)
    };
    let size = video.size();
    let [b, k, c, h, w] = size[..] else {
        return Err(InferError::new(
            InferErrorKind::ModelError,
            format!("a chain stage got a video of {size:?}"),
        ));
    };
    if factor < 2 || k < 2 {
        return Ok(video.shallow_clone());
    }
    let device = video.device();
    let flat = video
        .f_reshape([b * k, c, h, w])
        .map_err(tch_error("flatten the keyframes"))?;
    // One row per in-between frame: the frame before it (the one after is the next row of
    // `flat`) and its instant.
    let (mut first, mut instants) = (Vec::new(), Vec::new());
    for job in 0..b {
        for gap in 0..k - 1 {
            for step in 1..factor {
                first.push(job * k + gap);
                instants.push(step as f32 / factor as f32);
            }
        }
    }
    let mut between = Vec::new();
    for start in (0..first.len()).step_by(per_pass.max(1)) {
        let end = (start + per_pass.max(1)).min(first.len());
        let pick = |offset: i64| {
            (Tensor::from_slice(&first[start..end]) + offset)
                .f_to_device(device)
                .and_then(|index| flat.f_index_select(0, &index))
                .map_err(tch_error("gather the frame pairs"))
        };
        let t = Tensor::from_slice(&instants[start..end])
            .f_to_device(device)
            .map_err(tch_error("instants to device"))?;
        between.push(model.interpolate(&pick(0)?, &pick(1)?, &t)?);
    }
    between.insert(0, flat);
    let all = Tensor::f_cat(&between, 0).map_err(tch_error("join the frames"))?;
    // Every job's frames in order: keyframe, its in-betweens, the next keyframe...
    let out_frames = (k - 1) * factor + 1;
    let mut order = Vec::with_capacity((b * out_frames) as usize);
    for job in 0..b {
        for frame in 0..out_frames {
            let (gap, step) = (frame / factor, frame % factor);
            order.push(if step == 0 {
                job * k + gap
            } else {
                b * k + (job * (k - 1) + gap) * (factor - 1) + step - 1
            });
        }
    }
    Tensor::from_slice(&order)
        .f_to_device(device)
        .and_then(|index| all.f_index_select(0, &index))
        .and_then(|frames| frames.f_reshape([b, out_frames, c, h, w]))
        .map_err(tch_error("order the frames"))
}

/// The answering thread: rounds CPU videos to frames and replies to each job.
fn answer(finished: &flume::Receiver<Finished>, stats: &EngineStats) {
    for answers in finished.iter() {
        for (reply, result) in answers {
            let frames = result.and_then(|output| match output {
                Output::Frames(frames) => Ok(frames),
                Output::Video(video) => one_clip(&video),
            });
            stats.jobs.fetch_add(1, Ordering::Relaxed);
            // The caller may have gone (a drained worker): nothing to do then.
            let _ = reply.send(frames);
        }
    }
}

/// One job's `[T, 3, H, W]` video as frames.
fn one_clip(video: &Tensor) -> Result<Vec<RgbFrame>, InferError> {
    let batch = video
        .f_unsqueeze(0)
        .map_err(|err| InferError::from_tch("video to frames", err, InferErrorKind::ModelError))?;
    video_to_frames(&batch)?.pop().ok_or_else(|| {
        InferError::new(
            InferErrorKind::ModelError,
            "the model returned an empty video",
        )
    })
}
