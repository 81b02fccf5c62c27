//! `/v1/accounts`: the app backend tells the fleet about its accounts — create, update (status,
//! birth date, personal fields, legal hold), terminate, erasure. The answers never echo
//! personal fields back.
//!
//! Children under 14 are not served: an account created for one is refused (nothing stored);
//! one discovered later (a birth date, or the flag) is flagged, tombstoned for the workers and
//! stripped of its personal fields at once, and the janitor purges the rest. An erased
//! account's personalisation sessions end with it (`account_erased`, each with its `ended`
//! marker); the janitor deletes their objects.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use clipfleet_ledger::{Account, AccountStatus, NewAccount, PersonalFields};
use clipfleet_proto::{AccountId, ErrorCode, Timestamp};
use clipfleet_store::{ObjectKey, body_from_bytes};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::client::Caller;
use crate::error::ApiError;
use crate::service::State as AppState;

/// Personal fields the app backend may send, as the policy lists them. Its `Debug` says
/// which are present, never their values.
#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct PersonalInput {
    #[serde(default)]
    email: Option<String>,
    #[serde(default)]
    username: Option<String>,
    #[serde(default)]
    password_hash: Option<String>,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    gender: Option<String>,
    #[serde(default)]
    phone: Option<String>,
    #[serde(default)]
    third_party_login: Option<String>,
}

impl std::fmt::Debug for PersonalInput {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let shown = |value: &Option<String>| value.as_ref().map(|_| "<set>");
        f.debug_struct("PersonalInput")
            .field("email", &shown(&self.email))
            .field("username", &shown(&self.username))
            .field("password_hash", &shown(&self.password_hash))
            .field("name", &shown(&self.name))
            .field("gender", &shown(&self.gender))
            .field("phone", &shown(&self.phone))
            .field("third_party_login", &shown(&self.third_party_login))
            .finish()
    }
}

impl PersonalInput {
    fn is_empty(&self) -> bool {
        self.email.is_none()
            && self.username.is_none()
            && self.password_hash.is_none()
            && self.name.is_none()
            && self.gender.is_none()
            && self.phone.is_none()
            && self.third_party_login.is_none()
    }

    /// Fields sent replace the stored ones; fields not sent keep theirs.
    fn merged_into(self, mut current: PersonalFields) -> PersonalFields {
        let set = |slot: &mut Option<String>, value: Option<String>| {
            if value.is_some() {
                *slot = value;
            }
        };
        set(&mut current.email, self.email);
        set(&mut current.username, self.username);
        set(&mut current.password_hash, self.password_hash);
        set(&mut current.name, self.name);
        set(&mut current.gender, self.gender);
        set(&mut current.phone, self.phone);
        set(&mut current.third_party_login, self.third_party_login);
        current
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct CreateAccount {
    account_id: String,
    #[serde(default)]
    birth_date: Option<String>,
    #[serde(default)]
    under_14: bool,
    #[serde(flatten)]
    personal: PersonalInput,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct UpdateAccount {
    #[serde(default)]
    status: Option<String>,
    #[serde(default)]
    birth_date: Option<String>,
    #[serde(default)]
    under_14: Option<bool>,
    #[serde(default)]
    legal_hold: Option<bool>,
    #[serde(flatten)]
    personal: PersonalInput,
}

fn view(account: &Account) -> Value {
    let ms = |at: Option<Timestamp>| at.map_or(Value::Null, |at| json!(at.unix_ms()));
    json!({
        "account_id": account.id.as_str(),
        "status": account.status.as_str(),
        "created_at_ms": account.created_at.unix_ms(),
        "terminated_at_ms": ms(account.terminated_at),
        "under_14": account.under_14,
        "legal_hold": account.legal_hold,
        "erasure_requested_at_ms": ms(account.erasure_requested_at),
        "erased": account.tombstoned_at.is_some(),
    })
}

fn account_id(text: &str) -> Result<AccountId, ApiError> {
    AccountId::new(text.to_owned())
        .map_err(|err| ApiError::new(ErrorCode::InvalidParams, format!("account_id: {err}")))
}

fn json_body<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    serde_json::from_slice(body).map_err(|err| {
        ApiError::bad_request(format!("the body is not valid JSON for this call: {err}"))
    })
}

fn now() -> Timestamp {
    Timestamp::from_system_time(std::time::SystemTime::now())
}

pub(crate) async fn create(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    body: axum::body::Bytes,
) -> Result<Response, ApiError> {
    let input: CreateAccount = json_body(&body)?;
    let id = account_id(&input.account_id)?;
    let under_14 = input.under_14
        || input
            .birth_date
            .as_deref()
            .is_some_and(|date| is_under_14(date, now()));
    if under_14 {
        // Nothing about a child is kept, not even the refusal's account id in usage records.
        return Err(ApiError::new(
            ErrorCode::UnderAge,
            "the service is not offered to children under 14",
        ));
    }
    let account = state
        .deps
        .ledger
        .create_account(&NewAccount {
            id: id.clone(),
            birth_date: input.birth_date,
            under_14: false,
            personal: input.personal.merged_into(PersonalFields::default()),
        })
        .await?;
    caller.record(&state, Some(&id), "account.create").await;
    Ok((StatusCode::CREATED, Json(view(&account))).into_response())
}

pub(crate) async fn show(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let id = account_id(&id)?;
    let account = state.deps.ledger.get_account(&id).await?;
    caller.record(&state, Some(&id), "account.get").await;
    Ok(Json(view(&account)))
}

pub(crate) async fn update(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Path(id): Path<String>,
    body: axum::body::Bytes,
) -> Result<Json<Value>, ApiError> {
    let id = account_id(&id)?;
    let input: UpdateAccount = json_body(&body)?;
    let ledger = &state.deps.ledger;
    let mut account = ledger.get_account(&id).await?;
    caller.record(&state, Some(&id), "account.update").await;
    let discovered_under_14 = input.under_14 == Some(true)
        || input
            .birth_date
            .as_deref()
            .is_some_and(|date| is_under_14(date, now()));
    if discovered_under_14 {
        erase_under_14(&state, &id).await?;
        return Ok(Json(view(&ledger.get_account(&id).await?)));
    }
    if input.under_14 == Some(false) && account.under_14 {
        return Err(ApiError::new(
            ErrorCode::Conflict,
            "an account flagged under 14 is erased; it cannot be unflagged",
        ));
    }
    if account.tombstoned_at.is_some() {
        return Err(ApiError::new(
            ErrorCode::AccountErased,
            "the account is erased",
        ));
    }
    if let Some(date) = &input.birth_date {
        account = ledger.set_birth_date(&id, Some(date)).await?;
    }
    if !input.personal.is_empty() {
        let personal = input.personal.merged_into(account.personal.clone());
        account = ledger.update_personal(&id, &personal).await?;
    }
    if let Some(hold) = input.legal_hold {
        account = ledger.set_legal_hold(&id, hold).await?;
    }
    if let Some(status) = input.status.as_deref() {
        let status = match status {
            "active" => AccountStatus::Active,
            "suspended" => AccountStatus::Suspended,
            "terminated" => {
                return Err(ApiError::new(
                    ErrorCode::InvalidParams,
                    "terminate with POST /v1/accounts/{id}/terminate",
                ));
            }
            other => {
                return Err(ApiError::new(
                    ErrorCode::InvalidParams,
                    format!("status {other:?} is not active or suspended"),
                ));
            }
        };
        account = ledger.set_account_status(&id, status).await?;
    }
    Ok(Json(view(&account)))
}

pub(crate) async fn terminate(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let id = account_id(&id)?;
    let account = state.deps.ledger.terminate_account(&id).await?;
    caller.record(&state, Some(&id), "account.terminate").await;
    Ok(Json(view(&account)))
}

pub(crate) async fn erase(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let id = account_id(&id)?;
    state.deps.ledger.request_erasure(&id).await?;
    let account = tombstone(&state, &id).await?;
    // The request is recorded without the account id: it is about to be purged.
    caller.record(&state, None, "account.erasure").await;
    Ok((StatusCode::ACCEPTED, Json(view(&account))).into_response())
}

/// The holder is under 14: flag, tombstone, strip personal fields, now.
pub(crate) async fn erase_under_14(state: &AppState, id: &AccountId) -> Result<(), ApiError> {
    state.deps.ledger.flag_under_14(id).await?;
    tombstone(state, id).await?;
    Ok(())
}

/// Marks the account erased for the workers (which have no database: they check the
/// tombstone object before running a job and drop the job), ends its sessions and purges its
/// personal fields. The janitor deletes the rest (jobs, usage, objects, the sessions' objects)
/// and, later, the tombstone.
async fn tombstone(state: &AppState, id: &AccountId) -> Result<Account, ApiError> {
    let marker = serde_json::to_vec(&json!({ "erased_at_ms": now().unix_ms() }))
        .map_err(|err| ApiError::internal("tombstone", err))?;
    state
        .deps
        .store
        .put(&ObjectKey::tombstone(id), body_from_bytes(marker))
        .await?;
    crate::sessions::end_for_erasure(state, id).await?;
    Ok(state.deps.ledger.tombstone_account(id).await?)
}

/// Whether someone born on `birth_date` (`YYYY-MM-DD`) is under 14 on the UTC day of `today`.
/// A date that does not parse is not evidence of anything (the ledger refuses it anyway).
pub(crate) fn is_under_14(birth_date: &str, today: Timestamp) -> bool {
    let Some((year, month, day)) = parse_date(birth_date) else {
        return false;
    };
    let (ty, tm, td) = civil_from_days((today.unix_ms() / 86_400_000) as i64);
    let mut age = ty - year;
    if (tm, td) < (month, day) {
        age -= 1;
    }
    age < 14
}

fn parse_date(text: &str) -> Option<(i64, u32, u32)> {
    let mut parts = text.split('-');
    let year = parts.next()?.parse().ok()?;
    let month = parts.next()?.parse().ok()?;
    let day = parts.next()?.parse().ok()?;
    parts.next().is_none().then_some((year, month, day))
}

/// Days since 1970-01-01 → (year, month, day), proleptic Gregorian (H. Hinnant's algorithm).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn day(y: i64, m: u32, d: u32) -> Timestamp {
        // Inverse of civil_from_days by search (tests only).
        let mut days = (y - 1970) * 365 + (y - 1969) / 4;
        while civil_from_days(days) < (y, m, d) {
            days += 1;
        }
        while civil_from_days(days) > (y, m, d) {
            days -= 1;
        }
        Timestamp::from_unix_ms(days as u64 * 86_400_000 + 3_600_000)
    }

    #[test]
    fn civil_dates_round_trip_known_days() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(11_016), (2000, 2, 29));
        assert_eq!(civil_from_days(20_786), (2026, 11, 29));
    }

    #[test]
    fn fourteen_is_reached_on_the_birthday() {
        let today = day(2026, 11, 29);
        assert!(is_under_14("2012-11-30", today));
        assert!(!is_under_14("2012-11-29", today));
        assert!(!is_under_14("1990-01-01", today));
        assert!(is_under_14("2020-01-01", today));
        assert!(!is_under_14("not-a-date", today));
    }
}
