//! Who is asking: the caller's address and device id, kept as the policy's usage details
//! (`usage` rows the janitor expires), and the service token's holder.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;

use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::request::Parts;
use clipfleet_ledger::NewUsage;
use clipfleet_proto::AccountId;

use crate::error::ApiError;
use crate::service::State;

/// The device id header the app sends.
pub(crate) const DEVICE_ID_HEADER: &str = "x-device-id";

/// Longest device id kept; a longer one is cut (it is an opaque identifier, not content).
const MAX_DEVICE_ID_BYTES: usize = 128;

/// An authenticated request's origin.
#[derive(Debug, Clone)]
pub(crate) struct Caller {
    pub ip: IpAddr,
    pub device_id: Option<String>,
}

impl FromRequestParts<Arc<State>> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &Arc<State>,
    ) -> Result<Self, Self::Rejection> {
        state.tokens.authenticate(&parts.headers)?;
        let peer = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED), |info| info.0.ip());
        let forwarded = state
            .options
            .trust_forwarded_for
            .then(|| {
                parts
                    .headers
                    .get("x-forwarded-for")?
                    .to_str()
                    .ok()?
                    .split(',')
                    .next()?
                    .trim()
                    .parse::<IpAddr>()
                    .ok()
            })
            .flatten();
        let device_id = parts
            .headers
            .get(DEVICE_ID_HEADER)
            .and_then(|value| value.to_str().ok())
            .map(str::trim)
            .filter(|id| !id.is_empty())
            .map(|id| {
                let mut end = id.len().min(MAX_DEVICE_ID_BYTES);
                while !id.is_char_boundary(end) {
                    end -= 1;
                }
                id[..end].to_owned()
            });
        Ok(Caller {
            ip: forwarded.unwrap_or(peer),
            device_id,
        })
    }
}

impl Caller {
    /// Records what this caller did for `account`. A failure to record is logged, not
    /// answered: the request itself already happened.
    pub(crate) async fn record(&self, state: &State, account: Option<&AccountId>, action: &str) {
        let usage = NewUsage {
            account_id: account.cloned(),
            ip: self.ip,
            device_id: self.device_id.clone(),
            action: action.to_owned(),
        };
        if let Err(err) = state.usage.record(usage).await {
            tracing::warn!(error = %err, action, "could not record usage");
        }
    }
}
