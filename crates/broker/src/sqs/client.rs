//! The SQS client, queue names, and the one place SDK errors become [`BrokerError`]s.

use aws_config::{BehaviorVersion, Region};
use aws_sdk_sqs::error::{ProvideErrorMetadata, SdkError};
use clipfleet_proto::{PoolName, Priority};

use crate::{BrokerError, BrokerErrorKind, BrokerResult, QueueRef};

/// Longest SQS queue name.
const MAX_QUEUE_NAME: usize = 80;

/// Builds the client the way every AWS client of ours is built: region from the URL
/// (`sqs://<region>`) or the environment, endpoint from `AWS_ENDPOINT_URL` when set (emulators).
pub(crate) async fn client(url: &str) -> BrokerResult<aws_sdk_sqs::Client> {
    let region = url
        .strip_prefix("sqs://")
        .unwrap_or("")
        .trim_end_matches('/');
    let mut loader = aws_config::defaults(BehaviorVersion::latest());
    if !region.is_empty() {
        if !region
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        {
            return Err(BrokerError::new(
                BrokerErrorKind::InvalidInput,
                format!("sqs://{region}: not a region name"),
            ));
        }
        loader = loader.region(Region::new(region.to_owned()));
    }
    let shared = loader.load().await;
    if shared.region().is_none() {
        return Err(BrokerError::new(
            BrokerErrorKind::InvalidInput,
            "no AWS region: use sqs://<region> or set AWS_REGION",
        ));
    }
    Ok(aws_sdk_sqs::Client::new(&shared))
}

/// Queue names: `<ns>_jobs_<pool>`, `<ns>_jobs_<pool>_paid`, `<ns>_dead_<pool>`, `<ns>_events`.
/// Namespaces and pools use `[a-z0-9-]`, so `_` separates unambiguously.
#[derive(Debug, Clone)]
pub(crate) struct Names {
    ns: String,
}

impl Names {
    pub(crate) fn new(namespace: &str) -> Self {
        Names {
            ns: namespace.to_owned(),
        }
    }

    pub(crate) fn jobs(&self, pool: &PoolName, priority: Priority) -> String {
        match priority {
            Priority::Paid => format!("{}_jobs_{pool}_paid", self.ns),
            _ => format!("{}_jobs_{pool}", self.ns),
        }
    }

    pub(crate) fn dead(&self, pool: &PoolName) -> String {
        format!("{}_dead_{pool}", self.ns)
    }

    pub(crate) fn events(&self) -> String {
        format!("{}_events", self.ns)
    }

    /// The physical queues of a logical one, with the class each delivers.
    pub(crate) fn queues_of(&self, queue: &QueueRef) -> BrokerResult<Vec<(String, Priority)>> {
        Ok(match queue {
            QueueRef::Jobs(pool) => vec![
                (self.jobs(pool, Priority::Paid), Priority::Paid),
                (self.jobs(pool, Priority::Free), Priority::Free),
            ],
            QueueRef::Dead(pool) => vec![(self.dead(pool), Priority::Free)],
            QueueRef::Events => vec![(self.events(), Priority::Free)],
            QueueRef::Control(_) => return Err(no_control()),
        })
    }

    pub(crate) fn check_len(name: &str) -> BrokerResult<()> {
        if name.len() > MAX_QUEUE_NAME {
            return Err(BrokerError::new(
                BrokerErrorKind::InvalidInput,
                format!(
                    "SQS queue name {name} is over {MAX_QUEUE_NAME} characters: shorten the namespace or pool"
                ),
            ));
        }
        Ok(())
    }
}

pub(crate) fn no_control() -> BrokerError {
    BrokerError::new(
        BrokerErrorKind::Unsupported,
        "SQS has no fan-out for control messages: steer SQS workers through their pool (or SNS)",
    )
}

/// The one place SQS errors become broker errors.
pub(crate) fn sqs_error<E, R>(context: &str, err: SdkError<E, R>) -> BrokerError
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug,
{
    let code = err.code().unwrap_or("").to_owned();
    let kind = match &err {
        SdkError::ServiceError(_) => match code.as_str() {
            "AWS.SimpleQueueService.NonExistentQueue" | "QueueDoesNotExist" => {
                BrokerErrorKind::NotFound
            }
            "ReceiptHandleIsInvalid" | "MessageNotInflight" | "InvalidReceiptHandle" => {
                BrokerErrorKind::LeaseLost
            }
            "RequestThrottled"
            | "ThrottlingException"
            | "ServiceUnavailable"
            | "InternalError"
            | "KmsThrottled" => BrokerErrorKind::Unavailable,
            "QueueAlreadyExists" | "QueueNameExists" => BrokerErrorKind::InvalidInput,
            _ if code.starts_with("InvalidParameter")
                || code.starts_with("AWS.SimpleQueueService.") =>
            {
                BrokerErrorKind::InvalidInput
            }
            _ => BrokerErrorKind::Internal,
        },
        SdkError::TimeoutError(_) => BrokerErrorKind::Timeout,
        _ => BrokerErrorKind::Unavailable,
    };
    let message = err.message().map(str::to_owned).unwrap_or_else(|| {
        use std::error::Error as _;
        let mut text = err.to_string();
        let mut source = err.source();
        while let Some(inner) = source {
            text = format!("{text}: {inner}");
            source = inner.source();
        }
        text
    });
    BrokerError::new(kind, format!("{context}: {code} {message}"))
}
