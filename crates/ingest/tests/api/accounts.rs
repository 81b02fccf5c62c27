//! The accounts API: what the app backend tells the fleet, and the under-14 and erasure rules.

use clipfleet_ledger::AccountStatus;
use clipfleet_proto::AccountId;
use clipfleet_store::ObjectKey;
use serde_json::{Value, json};

use crate::fleet::{Fleet, error_code, jpeg};

fn id(text: &str) -> AccountId {
    AccountId::new(text.to_owned()).expect("account id")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn accounts_are_created_updated_and_never_echo_personal_fields() -> anyhow::Result<()> {
    let fleet = Fleet::embedded(&[]).await?;
    let created = fleet
        .create_account("acct-1", json!({"email": "ada@example.com", "name": "Ada"}))
        .await?;
    assert_eq!(created["status"], "active");
    assert!(
        !created.to_string().contains("ada@example.com"),
        "{created}"
    );
    let stored = fleet.ledger.get_account(&id("acct-1")).await?;
    assert_eq!(stored.personal.email.as_deref(), Some("ada@example.com"));

    let again = fleet
        .request(reqwest::Method::POST, "/v1/accounts")
        .json(&json!({"account_id": "acct-1"}))
        .send()
        .await?;
    assert_eq!(error_code(again).await?, (409, "conflict".into()));

    let patch = |body: Value| {
        fleet
            .request(reqwest::Method::PATCH, "/v1/accounts/acct-1")
            .json(&body)
            .send()
    };
    let suspended: Value = patch(json!({"status": "suspended", "phone": "+100"}))
        .await?
        .json()
        .await?;
    assert_eq!(suspended["status"], "suspended");
    let stored = fleet.ledger.get_account(&id("acct-1")).await?;
    assert_eq!(stored.personal.phone.as_deref(), Some("+100"));
    assert_eq!(stored.personal.email.as_deref(), Some("ada@example.com"));
    let refused = fleet
        .submit("acct-1", jpeg(64, 64), json!({}), None)
        .await?;
    assert_eq!(error_code(refused).await?, (403, "account_inactive".into()));
    patch(json!({"status": "active"})).await?;
    let accepted = fleet
        .submit("acct-1", jpeg(64, 64), json!({}), None)
        .await?;
    assert_eq!(accepted.status(), 202);

    assert_eq!(
        error_code(patch(json!({"status": "asleep"})).await?).await?,
        (400, "invalid_params".into())
    );
    assert_eq!(
        error_code(patch(json!({"favourite_colour": "red"})).await?).await?,
        (400, "bad_request".into())
    );
    let missing = fleet
        .request(reqwest::Method::GET, "/v1/accounts/nobody")
        .send()
        .await?;
    assert_eq!(error_code(missing).await?, (404, "not_found".into()));

    let terminated: Value = fleet
        .request(reqwest::Method::POST, "/v1/accounts/acct-1/terminate")
        .send()
        .await?
        .json()
        .await?;
    assert_eq!(terminated["status"], "terminated");
    assert!(terminated["terminated_at_ms"].is_number());
    fleet.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn children_under_14_are_refused_at_sign_up_and_erased_when_discovered() -> anyhow::Result<()>
{
    let fleet = Fleet::embedded(&[]).await?;
    for body in [
        json!({"account_id": "kid-1", "birth_date": "2019-06-01", "email": "kid@example.com"}),
        json!({"account_id": "kid-2", "under_14": true}),
    ] {
        let response = fleet
            .request(reqwest::Method::POST, "/v1/accounts")
            .json(&body)
            .send()
            .await?;
        assert_eq!(error_code(response).await?, (403, "under_age".into()));
    }
    for kid in ["kid-1", "kid-2"] {
        let err = fleet
            .ledger
            .get_account(&id(kid))
            .await
            .expect_err("nothing stored");
        assert_eq!(err.kind(), clipfleet_ledger::LedgerErrorKind::NotFound);
    }

    // Discovered later: flagged, tombstoned for the workers, personal fields gone at once.
    fleet
        .create_account(
            "teen",
            json!({"email": "t@example.com", "birth_date": "2000-01-01"}),
        )
        .await?;
    let flagged: Value = fleet
        .request(reqwest::Method::PATCH, "/v1/accounts/teen")
        .json(&json!({"birth_date": "2016-03-03"}))
        .send()
        .await?
        .json()
        .await?;
    assert_eq!(flagged["under_14"], true);
    assert_eq!(flagged["erased"], true);
    let stored = fleet.ledger.get_account(&id("teen")).await?;
    assert_eq!(stored.status, AccountStatus::Terminated);
    assert!(stored.personal.email.is_none() && stored.birth_date.is_none());
    fleet.store.head(&ObjectKey::tombstone(&id("teen"))).await?;
    let refused = fleet.submit("teen", jpeg(64, 64), json!({}), None).await?;
    assert_eq!(error_code(refused).await?, (403, "under_age".into()));
    fleet.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_erasure_request_tombstones_at_once() -> anyhow::Result<()> {
    let fleet = Fleet::embedded(&[]).await?;
    fleet
        .create_account("acct-1", json!({"email": "e@example.com"}))
        .await?;
    let response = fleet
        .request(reqwest::Method::POST, "/v1/accounts/acct-1/erasure")
        .send()
        .await?;
    assert_eq!(response.status(), 202);
    let body: Value = response.json().await?;
    assert_eq!(body["erased"], true);
    assert!(body["erasure_requested_at_ms"].is_number());
    fleet
        .store
        .head(&ObjectKey::tombstone(&id("acct-1")))
        .await?;
    let stored = fleet.ledger.get_account(&id("acct-1")).await?;
    assert!(stored.personal.email.is_none());
    let refused = fleet
        .submit("acct-1", jpeg(64, 64), json!({}), None)
        .await?;
    assert_eq!(error_code(refused).await?, (403, "account_inactive".into()));
    // Erased accounts cannot be edited back to life.
    let patch = fleet
        .request(reqwest::Method::PATCH, "/v1/accounts/acct-1")
        .json(&json!({"status": "active"}))
        .send()
        .await?;
    assert_eq!(error_code(patch).await?, (410, "account_erased".into()));
    fleet.stop().await
}
