//! The connection to RabbitMQ: opened lazily, replaced with backoff when it dies, and the one
//! place where lapin's errors become [`BrokerError`]s.

use std::sync::Arc;
use std::time::Duration;

use lapin::options::ConfirmSelectOptions;
use lapin::uri::AMQPUri;
use lapin::{Channel, Connection, ConnectionProperties, ErrorKind};
use tokio::sync::Mutex;
use tracing::{info, warn};

use crate::{BrokerError, BrokerErrorKind, BrokerOptions, BrokerResult};

/// One live connection and its confirm-mode publishing channel.
#[derive(Debug)]
pub(crate) struct Session {
    /// Increases with every reconnect.
    pub generation: u64,
    pub connection: Connection,
    /// Shared by every publisher: confirms pipeline across concurrent callers.
    pub publisher: Channel,
}

impl Session {
    pub(crate) fn is_alive(&self) -> bool {
        self.connection.status().connected() && self.publisher.status().connected()
    }
}

/// Hands out the live session, reconnecting (with exponential backoff, within the operation
/// timeout) when the last one died.
#[derive(Debug)]
pub(crate) struct Sessions {
    url: String,
    options: BrokerOptions,
    current: Mutex<Option<Arc<Session>>>,
}

impl Sessions {
    pub(crate) fn new(url: &str, options: BrokerOptions) -> Self {
        Sessions {
            url: url.to_owned(),
            options,
            current: Mutex::new(None),
        }
    }

    pub(crate) fn options(&self) -> &BrokerOptions {
        &self.options
    }

    /// The live session, connecting first if needed. Returns `(session, fresh)`; `fresh` is true
    /// when this call made the connection (topology that does not survive must be redeclared).
    pub(crate) async fn get(&self) -> BrokerResult<(Arc<Session>, bool)> {
        let mut current = self.current.lock().await;
        if let Some(session) = current.as_ref()
            && session.is_alive()
        {
            return Ok((session.clone(), false));
        }
        let generation = current.as_ref().map_or(0, |s| s.generation) + 1;
        let deadline = tokio::time::Instant::now() + self.options.op_timeout;
        let mut backoff = self.options.reconnect_min;
        loop {
            match tokio::time::timeout_at(deadline, self.open(generation)).await {
                Ok(Ok(session)) => {
                    if generation > 1 {
                        info!(generation, "reconnected to RabbitMQ");
                    }
                    let session = Arc::new(session);
                    *current = Some(session.clone());
                    return Ok((session, true));
                }
                Ok(Err(err)) if err.kind == BrokerErrorKind::InvalidInput => return Err(err),
                Ok(Err(err)) => {
                    if tokio::time::Instant::now() + backoff >= deadline {
                        return Err(err);
                    }
                    warn!(error = %err, backoff_ms = backoff.as_millis() as u64, "RabbitMQ connect failed");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(self.options.reconnect_max);
                }
                Err(_) => {
                    return Err(BrokerError::new(
                        BrokerErrorKind::Unavailable,
                        format!(
                            "no RabbitMQ connection within {:?}",
                            self.options.op_timeout
                        ),
                    ));
                }
            }
        }
    }

    /// Forgets the session if it is still `generation` (a caller saw it fail). The old
    /// connection is closed after the lock is released and within the operation timeout: a
    /// close that waits on a dead peer must not hold every publisher behind it.
    pub(crate) async fn invalidate(&self, generation: u64) {
        let stale = {
            let mut current = self.current.lock().await;
            if current.as_ref().is_some_and(|s| s.generation == generation) {
                current.take()
            } else {
                None
            }
        };
        if let Some(session) = stale {
            self.close_connection(&session, 320, "clipfleet: reconnecting")
                .await;
        }
    }

    async fn open(&self, generation: u64) -> BrokerResult<Session> {
        let mut uri: AMQPUri = self.url.parse().map_err(|err| {
            BrokerError::new(
                BrokerErrorKind::InvalidInput,
                format!("not an amqp url: {err}"),
            )
        })?;
        if uri.query.heartbeat.is_none() {
            // validate() keeps it within 1..=u16::MAX seconds.
            let seconds = u16::try_from(self.options.heartbeat.as_secs()).unwrap_or(u16::MAX);
            uri.query.heartbeat = Some(seconds);
        }
        let connection = Connection::connect_uri(uri, ConnectionProperties::default())
            .await
            .map_err(|err| amqp_error("connect", &err))?;
        let publisher = connection
            .create_channel()
            .await
            .map_err(|err| amqp_error("open publishing channel", &err))?;
        publisher
            .confirm_select(ConfirmSelectOptions::default())
            .await
            .map_err(|err| amqp_error("enable publisher confirms", &err))?;
        Ok(Session {
            generation,
            connection,
            publisher,
        })
    }

    /// Closes the connection (consumers' channels with it).
    pub(crate) async fn close(&self) {
        let session = self.current.lock().await.take();
        if let Some(session) = session {
            self.close_connection(&session, 200, "clipfleet: closing")
                .await;
        }
    }

    /// Asks RabbitMQ to close a connection, waiting for its answer no longer than the operation
    /// timeout; a connection whose peer never answers is ended by the heartbeat.
    async fn close_connection(&self, session: &Session, code: u16, reason: &str) {
        let closing = session.connection.close(code, reason.into());
        if tokio::time::timeout(self.options.op_timeout, closing)
            .await
            .is_err()
        {
            warn!(
                generation = session.generation,
                "RabbitMQ did not answer the connection close; dropping it"
            );
        }
    }
}

/// Closes a channel, waiting for RabbitMQ's answer no longer than `timeout`: what it held goes
/// back to its queues either way, when the channel or its connection goes.
pub(crate) async fn close_channel(channel: &Channel, timeout: Duration, reason: &str) {
    let _ = tokio::time::timeout(timeout, channel.close(200, reason.into())).await;
}

/// The one place lapin errors become broker errors.
pub(crate) fn amqp_error(context: &str, err: &lapin::Error) -> BrokerError {
    let kind = match err.kind() {
        ErrorKind::ProtocolError(amqp) => match amqp.get_id() {
            404 => BrokerErrorKind::NotFound,
            403 | 406 | 530 | 540 => BrokerErrorKind::InvalidInput,
            _ => BrokerErrorKind::Unavailable,
        },
        ErrorKind::AuthProviderError(_) | ErrorKind::InvalidProtocolVersion(_) => {
            BrokerErrorKind::InvalidInput
        }
        ErrorKind::ParsingError(_) | ErrorKind::SerialisationError(_) => BrokerErrorKind::Internal,
        _ => BrokerErrorKind::Unavailable,
    };
    BrokerError::new(kind, format!("{context}: {err}"))
}

/// Runs a broker operation within the operation timeout.
pub(crate) async fn bounded<T>(
    timeout: Duration,
    what: &str,
    op: impl Future<Output = BrokerResult<T>>,
) -> BrokerResult<T> {
    tokio::time::timeout(timeout, op).await.unwrap_or_else(|_| {
        Err(BrokerError::new(
            BrokerErrorKind::Timeout,
            format!("{what}: no answer within {timeout:?}"),
        ))
    })
}
