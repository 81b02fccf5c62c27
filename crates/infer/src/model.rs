//! A TorchScript image-to-video model on one device.

use std::path::{Path, PathBuf};

use tch::{CModule, Device, IValue, Kind, Tensor};

use crate::{FaceBox, InferError, InferErrorKind};
use clipfleet_models::ModelDtype;

/// Values per job in the `params` input of a fleet model: motion id, strength, seed, reserved,
/// and the camera's focus x and y in [-1, 1] (see `models/README.md`).
pub const PARAMS_LEN: usize = 6;

/// A loaded model. Both ends of its contract are checked on every call, so a broken model is a
/// typed error, not a garbled video.
///
/// Fleet models (the manifest's) take `forward(image[B,3,H,W], params[B,6], frames) ->
/// video[B,frames,3,H,W]` ([`VideoModel::generate`]), as interpolators `forward(img0, img1,
/// t[B]) -> frame[B,3,H,W]` ([`VideoModel::interpolate`]), or as detectors `forward(image[1,3,H,W])
/// -> boxes[N,5]` ([`VideoModel::detect`]); the reference model of the libtorch
/// chain test takes the image alone ([`VideoModel::render`]).
#[derive(Debug)]
pub struct VideoModel {
    module: CModule,
    device: Device,
    dtype: ModelDtype,
    /// Where it was loaded from, for errors and logs.
    path: PathBuf,
}

fn load_error(path: &Path, err: tch::TchError) -> InferError {
    InferError::from_tch(
        &format!("load {}", path.display()),
        err,
        InferErrorKind::ModelLoad,
    )
}

impl VideoModel {
    /// Loads the TorchScript file at `path` onto `device`, in inference mode.
    pub fn load(path: &Path, device: Device) -> Result<Self, InferError> {
        let module = CModule::load_on_device(path, device).map_err(|err| load_error(path, err))?;
        Ok(VideoModel::ready(module, path, device, ModelDtype::Float32))
    }

    /// Loads a TorchScript module from `bytes` (already checked against the manifest) onto
    /// `device`; `path` names it in errors.
    pub fn load_bytes(
        bytes: &[u8],
        path: &Path,
        device: Device,
        dtype: ModelDtype,
    ) -> Result<Self, InferError> {
        let mut reader = std::io::Cursor::new(bytes);
        let mut module = CModule::load_data_on_device(&mut reader, device)
            .map_err(|err| load_error(path, err))?;
        if dtype == ModelDtype::Float16 {
            module.to(device, Kind::Half, false);
        }
        Ok(VideoModel::ready(module, path, device, dtype))
    }

    fn ready(mut module: CModule, path: &Path, device: Device, dtype: ModelDtype) -> Self {
        module.set_eval();
        VideoModel {
            module,
            device,
            dtype,
            path: path.to_path_buf(),
        }
    }

    /// The device the model runs on.
    pub fn device(&self) -> Device {
        self.device
    }

    fn check_images(images: &Tensor) -> Result<[i64; 4], InferError> {
        let size = images.size();
        let [b, c, h, w] = size[..] else {
            return Err(InferError::new(
                InferErrorKind::InvalidInput,
                format!("input must be [B, 3, H, W], got {size:?}"),
            ));
        };
        if c != 3 || b == 0 || h == 0 || w == 0 {
            return Err(InferError::new(
                InferErrorKind::InvalidInput,
                format!("input must be [B>0, 3, H>0, W>0], got {size:?}"),
            ));
        }
        if images.kind() != Kind::Float {
            return Err(InferError::new(
                InferErrorKind::InvalidInput,
                format!("input must be float32, got {:?}", images.kind()),
            ));
        }
        Ok([b, c, h, w])
    }

    fn check_video(
        &self,
        video: Tensor,
        [b, _, h, w]: [i64; 4],
        frames: Option<i64>,
    ) -> Result<Tensor, InferError> {
        let out = video.size();
        let contract = out.len() == 5
            && out[0] == b
            && out[1] > 0
            && frames.is_none_or(|t| out[1] == t)
            && out[2] == 3
            && out[3] == h
            && out[4] == w;
        if !contract || !matches!(video.kind(), Kind::Float | Kind::Half) {
            return Err(InferError::new(
                InferErrorKind::ModelError,
                format!(
                    "{} returned {:?} {out:?} for input [{b}, 3, {h}, {w}]; expected float [B, T, 3, H, W]",
                    self.path.display(),
                    video.kind()
                ),
            ));
        }
        video.f_to_kind(Kind::Float).map_err(|err| {
            InferError::from_tch("output to float32", err, InferErrorKind::ModelError)
        })
    }

    fn prepare(&self, input: &Tensor) -> Result<Tensor, InferError> {
        let kind = match self.dtype {
            ModelDtype::Float32 => Kind::Float,
            ModelDtype::Float16 => Kind::Half,
        };
        input
            .f_to_device(self.device)
            .and_then(|t| t.f_to_kind(kind))
            .map_err(|err| InferError::from_tch("input to device", err, InferErrorKind::ModelError))
    }

    fn forward_error(&self, err: tch::TchError) -> InferError {
        InferError::from_tch(
            &format!("forward {}", self.path.display()),
            err,
            InferErrorKind::ModelError,
        )
    }

    /// Renders a batch of images into a batch of videos (image-only contract).
    pub fn render(&self, images: &Tensor) -> Result<Tensor, InferError> {
        let shape = VideoModel::check_images(images)?;
        let images = self.prepare(images)?;
        let video = tch::no_grad(|| self.module.forward_ts(&[images]))
            .map_err(|err| self.forward_error(err))?;
        self.check_video(video, shape, None)
    }

    /// The frames between `img0` and `img1` (`float32[B, 3, H, W]` each) at the instants `t`
    /// (`float32[B]`, each in (0, 1)): `float32[B, 3, H, W]` (the interpolator contract).
    pub fn interpolate(
        &self,
        img0: &Tensor,
        img1: &Tensor,
        t: &Tensor,
    ) -> Result<Tensor, InferError> {
        let shape = VideoModel::check_images(img0)?;
        if img1.size() != img0.size() || img1.kind() != Kind::Float {
            return Err(InferError::new(
                InferErrorKind::InvalidInput,
                format!(
                    "both frames must be float32 {:?}, got {:?} {:?}",
                    img0.size(),
                    img1.kind(),
                    img1.size()
                ),
            ));
        }
        if t.size() != [shape[0]] || t.kind() != Kind::Float {
            return Err(InferError::new(
                InferErrorKind::InvalidInput,
                format!(
                    "t must be float32 [{}], got {:?} {:?}",
                    shape[0],
                    t.kind(),
                    t.size()
                ),
            ));
        }
        let inputs = [
            IValue::Tensor(self.prepare(img0)?),
            IValue::Tensor(self.prepare(img1)?),
            IValue::Tensor(self.prepare(t)?),
        ];
        let output = tch::no_grad(|| self.module.forward_is(&inputs))
            .map_err(|err| self.forward_error(err))?;
        let frame = match output {
            IValue::Tensor(frame)
                if frame.size() == shape && matches!(frame.kind(), Kind::Float | Kind::Half) =>
            {
                frame
            }
            other => {
                let got = match &other {
                    IValue::Tensor(t) => format!("{:?} {:?}", t.kind(), t.size()),
                    _ => "a non-tensor".into(),
                };
                return Err(InferError::new(
                    InferErrorKind::ModelError,
                    format!(
                        "{} returned {got} for frames {shape:?}; expected float [B, 3, H, W]",
                        self.path.display()
                    ),
                ));
            }
        };
        frame.f_to_kind(Kind::Float).map_err(|err| {
            InferError::from_tch("output to float32", err, InferErrorKind::ModelError)
        })
    }

    /// Generates `frames` frames per image with per-job `params` (`float32[B, PARAMS_LEN]`).
    pub fn generate(
        &self,
        images: &Tensor,
        params: &Tensor,
        frames: i64,
    ) -> Result<Tensor, InferError> {
        let shape = VideoModel::check_images(images)?;
        if params.size() != [shape[0], PARAMS_LEN as i64] || params.kind() != Kind::Float {
            return Err(InferError::new(
                InferErrorKind::InvalidInput,
                format!(
                    "params must be float32 [{}, {PARAMS_LEN}], got {:?} {:?}",
                    shape[0],
                    params.kind(),
                    params.size()
                ),
            ));
        }
        if !(1..=1024).contains(&frames) {
            return Err(InferError::new(
                InferErrorKind::InvalidInput,
                format!("frames must be 1..=1024, got {frames}"),
            ));
        }
        let inputs = [
            IValue::Tensor(self.prepare(images)?),
            IValue::Tensor(self.prepare(params)?),
            IValue::Int(frames),
        ];
        let output = tch::no_grad(|| self.module.forward_is(&inputs))
            .map_err(|err| self.forward_error(err))?;
        let IValue::Tensor(video) = output else {
            return Err(InferError::new(
                InferErrorKind::ModelError,
                format!("{} returned a non-tensor", self.path.display()),
            ));
        };
        self.check_video(video, shape, Some(frames))
    }

    /// The faces in one image (`float32[1, 3, H, W]`): the detector contract's `[N, 5]` rows
    /// (x1, y1, x2, y2 in the image's pixels, probability), highest probability first.
    pub fn detect(&self, image: &Tensor) -> Result<Vec<FaceBox>, InferError> {
        let [b, ..] = VideoModel::check_images(image)?;
        if b != 1 {
            return Err(InferError::new(
                InferErrorKind::InvalidInput,
                format!("a detector takes one image, got a batch of {b}"),
            ));
        }
        let input = self.prepare(image)?;
        let boxes = tch::no_grad(|| self.module.forward_ts(&[input]))
            .map_err(|err| self.forward_error(err))?;
        let size = boxes.size();
        let ok = matches!(size[..], [_, 5]) && matches!(boxes.kind(), Kind::Float | Kind::Half);
        if !ok {
            return Err(InferError::new(
                InferErrorKind::ModelError,
                format!(
                    "{} returned {:?} {size:?}; expected float [N, 5] face boxes",
                    self.path.display(),
                    boxes.kind()
                ),
            ));
        }
        let values: Vec<f32> = boxes
            .f_to_kind(Kind::Float)
            .and_then(|b| b.f_to_device(Device::Cpu))
            .and_then(|b| b.f_contiguous())
            .and_then(|b| Vec::<f32>::try_from(b.f_view([-1])?))
            .map_err(|err| InferError::from_tch("face boxes", err, InferErrorKind::ModelError))?;
        let faces = values
            .chunks_exact(5)
            .map(|row| FaceBox {
                x1: row[0],
                y1: row[1],
                x2: row[2],
                y2: row[3],
                score: row[4],
            })
            .collect::<Vec<_>>();
        if faces.iter().any(|f| {
            !(f.x1.is_finite() && f.y1.is_finite() && f.x2.is_finite() && f.y2.is_finite())
        }) {
            return Err(InferError::new(
                InferErrorKind::ModelError,
                format!("{} returned a box that is not finite", self.path.display()),
            ));
        }
        Ok(faces)
    }
}
