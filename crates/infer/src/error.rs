//! Errors of the inference engine, shaped as a kind callers match on plus a message.

/// What went wrong, coarsely enough to decide what to do about it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InferErrorKind {
    /// The input does not fit the model's contract (shape, dtype, size): terminal for the job.
    InvalidInput,
    /// The model file is missing, unreadable or not TorchScript.
    ModelLoad,
    /// The model failed while running or broke its output contract: terminal for the job.
    ModelError,
    /// The device ran out of memory: split the batch and retry.
    OutOfMemory,
    /// A personalised adapter made for another account, session or model: never applied.
    AdapterMismatch,
}

/// An inference failure.
#[derive(Debug, thiserror::Error)]
#[error("{kind:?}: {message}")]
pub struct InferError {
    /// What kind of failure.
    pub kind: InferErrorKind,
    /// Operator-facing detail (never pixel data).
    pub message: String,
}

impl InferError {
    pub(crate) fn new(kind: InferErrorKind, message: impl Into<String>) -> Self {
        InferError {
            kind,
            message: message.into(),
        }
    }

    /// Classifies an error from libtorch: the one place tch errors become kinds. libtorch
    /// reports CUDA (and CPU allocator) exhaustion only in its message text.
    pub(crate) fn from_tch(context: &str, err: tch::TchError, otherwise: InferErrorKind) -> Self {
        let text = err.to_string();
        let kind = if text.contains("out of memory") || text.contains("DefaultCPUAllocator") {
            InferErrorKind::OutOfMemory
        } else {
            otherwise
        };
        // libtorch messages carry a C++ backtrace after the message: keep the message only.
        let head: String = text
            .lines()
            .take_while(|line| {
                !line.starts_with("Exception raised from") && !line.starts_with("frame #")
            })
            .take(3)
            .collect::<Vec<_>>()
            .join(" | ");
        InferError::new(kind, format!("{context}: {head}"))
    }
}

impl From<clipfleet_models::ManifestError> for InferError {
    fn from(err: clipfleet_models::ManifestError) -> Self {
        InferError::new(InferErrorKind::ModelLoad, err.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn out_of_memory_is_recognised_from_libtorch_text() {
        let err = tch::TchError::Torch("CUDA out of memory. Tried to allocate 2.00 GiB".into());
        let classified = InferError::from_tch("forward", err, InferErrorKind::ModelError);
        assert_eq!(classified.kind, InferErrorKind::OutOfMemory);
        let err = tch::TchError::Torch("shape mismatch\nframe #0: c10::Error".into());
        let classified = InferError::from_tch("forward", err, InferErrorKind::ModelError);
        assert_eq!(classified.kind, InferErrorKind::ModelError);
        assert!(
            classified.message.starts_with("forward: "),
            "{}",
            classified.message
        );
        assert!(
            classified.message.contains("shape mismatch"),
            "{}",
            classified.message
        );
        assert!(
            !classified.message.contains("frame #0"),
            "{}",
            classified.message
        );
    }
}
