//! A TorchScript image-to-video model on one device.

use std::path::{Path, PathBuf};

use tch::{CModule, Device, Kind, Tensor};

use crate::{InferError, InferErrorKind};

/// A loaded model. `forward` takes `float32[B, 3, H, W]` in [0, 1] and must return
/// `float32[B, T, 3, H, W]`; both ends of that contract are checked on every call, so a broken
/// model is a typed error, not a garbled video.
#[derive(Debug)]
pub struct VideoModel {
    module: CModule,
    device: Device,
    /// Where it was loaded from, for errors and logs.
    path: PathBuf,
}

impl VideoModel {
    /// Loads the TorchScript file at `path` onto `device`, in inference mode.
    pub fn load(path: &Path, device: Device) -> Result<Self, InferError> {
        let mut module = CModule::load_on_device(path, device).map_err(|err| {
            InferError::from_tch(
                &format!("load {}", path.display()),
                err,
                InferErrorKind::ModelLoad,
            )
        })?;
        module.set_eval();
        Ok(VideoModel {
            module,
            device,
            path: path.to_path_buf(),
        })
    }

    /// The device the model runs on.
    pub fn device(&self) -> Device {
        self.device
    }

    /// Renders a batch of images into a batch of videos.
    pub fn render(&self, images: &Tensor) -> Result<Tensor, InferError> {
        let size = images.size();
        if size.len() != 4 || size[1] != 3 || size[0] == 0 || size[2] == 0 || size[3] == 0 {
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
        let images = images.f_to_device(self.device).map_err(|err| {
            InferError::from_tch("input to device", err, InferErrorKind::ModelError)
        })?;
        let video = tch::no_grad(|| self.module.forward_ts(&[images])).map_err(|err| {
            InferError::from_tch(
                &format!("forward {}", self.path.display()),
                err,
                InferErrorKind::ModelError,
            )
        })?;
        let out = video.size();
        let contract = out.len() == 5
            && out[0] == size[0]
            && out[1] > 0
            && out[2] == 3
            && out[3] == size[2]
            && out[4] == size[3];
        if !contract || video.kind() != Kind::Float {
            return Err(InferError::new(
                InferErrorKind::ModelError,
                format!(
                    "{} returned {:?} {out:?} for input {size:?}; expected float32 [B, T, 3, H, W]",
                    self.path.display(),
                    video.kind()
                ),
            ));
        }
        Ok(video)
    }
}
