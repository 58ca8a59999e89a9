//! `liveops send` and `liveops verify-receipt`: the client side of the HTTP contract, so the
//! README demo works by copy-paste.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context as _;
use clap::Args;
use liveops_core::Receipt;
use serde_json::Value;

use crate::config::Settings;

/// Options of `liveops send`.
#[derive(Args, Clone, Debug)]
pub struct SendOpts {
    /// Gateway base URL (default `http://127.0.0.1:PORT`).
    #[arg(long)]
    pub url: Option<String>,
    /// Keep each event's `ts` as written (by default it is set to now, so old samples are accepted).
    #[arg(long, conflicts_with = "ts")]
    pub keep_ts: bool,
    /// Set each event's `ts` to these unix seconds instead of now: a retry under the same
    /// `--idempotency-key` must send the same body, so it passes the `ts` the first run printed.
    #[arg(long, value_name = "UNIX_SECONDS")]
    pub ts: Option<i64>,
    /// Sign with this key id (sent as `X-Key-Id`).
    #[arg(long)]
    pub key_id: Option<String>,
    /// Send an `Idempotency-Key` header (the file name is appended for several files).
    #[arg(long)]
    pub idempotency_key: Option<String>,
}

fn refresh_ts(event: &mut Value, now: i64) {
    if let Some(obj) = event.as_object_mut() {
        if obj.contains_key("ts") {
            obj.insert("ts".into(), Value::from(now));
        }
    }
}

/// Builds the request path and body for one file.
fn prepare(raw: &str, keep_ts: bool, now: i64) -> anyhow::Result<(&'static str, Vec<u8>)> {
    let mut doc: Value = serde_json::from_str(raw).context("not valid JSON")?;
    let batch = doc.is_array() || doc.get("events").is_some_and(Value::is_array);
    if !keep_ts {
        match &mut doc {
            Value::Array(items) => items.iter_mut().for_each(|e| refresh_ts(e, now)),
            Value::Object(o) if batch => {
                if let Some(Value::Array(items)) = o.get_mut("events") {
                    items.iter_mut().for_each(|e| refresh_ts(e, now));
                }
            }
            other => refresh_ts(other, now),
        }
    }
    let path = if batch { "/events/batch" } else { "/events" };
    Ok((path, serde_json::to_vec(&doc)?))
}

/// Whether a success answer refused nothing: a batch's `rejected` count is 0 (a batch answers
/// 200 even when every event in it was refused).
fn nothing_rejected(answer: &str) -> bool {
    serde_json::from_str::<serde_json::Value>(answer)
        .ok()
        .and_then(|v| v["rejected"].as_u64())
        .is_none_or(|n| n == 0)
}

/// Signs and posts each file; exits non-zero if any answer is not a success, or is a batch's
/// with an event refused.
pub async fn run(s: &Settings, opts: &SendOpts, files: &[PathBuf]) -> anyhow::Result<ExitCode> {
    let base = opts
        .url
        .as_deref()
        .map(|u| u.trim_end_matches('/').to_owned())
        .unwrap_or_else(|| format!("http://127.0.0.1:{}", s.port));
    let client = reqwest::Client::new();
    let mut all_ok = true;
    // One `ts` for the whole run, so the hint below names the one value a retry needs.
    let event_ts = opts.ts.unwrap_or_else(|| chrono::Utc::now().timestamp());
    if opts.idempotency_key.is_some() && !opts.keep_ts && opts.ts.is_none() {
        eprintln!(
            "events sent with ts={event_ts}: to retry under the same --idempotency-key, \
             add --ts {event_ts} (another ts is another body, refused under a used key)"
        );
    }
    for file in files {
        let raw = std::fs::read_to_string(file)
            .with_context(|| format!("cannot read {}", file.display()))?;
        let now = chrono::Utc::now().timestamp();
        let (path, body) =
            prepare(&raw, opts.keep_ts, event_ts).with_context(|| file.display().to_string())?;
        let url = reqwest::Url::parse(&format!("{base}{path}"))
            .with_context(|| format!("{base}{path} is not a URL"))?;
        // The signature covers the path as sent, with whatever prefix `--url` carries.
        let sig = s
            .keyring
            .sign_request(opts.key_id.as_deref(), now, "POST", url.path(), &body)
            .with_context(|| {
                format!(
                    "no signing key with id {:?}",
                    opts.key_id.as_deref().unwrap_or("default")
                )
            })?;
        let mut req = client
            .post(url)
            .header("content-type", "application/json")
            .header("x-timestamp", now.to_string())
            .header("x-signature", sig);
        if let Some(kid) = &opts.key_id {
            req = req.header("x-key-id", kid);
        }
        if let Some(key) = &opts.idempotency_key {
            let key = if files.len() > 1 {
                format!(
                    "{key}-{}",
                    file.file_name().unwrap_or_default().to_string_lossy()
                )
            } else {
                key.clone()
            };
            req = req.header("idempotency-key", key);
        }
        let res = req
            .body(body)
            .send()
            .await
            .with_context(|| format!("cannot reach {base}"))?;
        let status = res.status();
        let text = res.text().await.unwrap_or_default();
        println!("{} {} {}", file.display(), status.as_u16(), text);
        all_ok &= status.is_success() && nothing_rejected(&text);
    }
    Ok(if all_ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// Verifies a receipt file offline with the configured keys; prints `{valid, reason}`.
pub fn verify_receipt_file(s: &Settings, file: &Path) -> anyhow::Result<ExitCode> {
    let raw =
        std::fs::read_to_string(file).with_context(|| format!("cannot read {}", file.display()))?;
    let receipt: Receipt = serde_json::from_str(&raw)
        .with_context(|| format!("{} is not a receipt", file.display()))?;
    let v = s.keyring.verify_receipt(&receipt);
    println!("{}", serde_json::to_string(&v)?);
    Ok(if v.valid {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn single_events_get_a_fresh_ts_and_batches_go_to_the_batch_route() {
        let (path, body) = prepare(r#"{"type":"x","ts":1}"#, false, 99).unwrap();
        assert_eq!(path, "/events");
        assert_eq!(serde_json::from_slice::<Value>(&body).unwrap()["ts"], 99);
        let (path, body) = prepare(r#"{"events":[{"ts":1},{"ts":2}]}"#, false, 7).unwrap();
        assert_eq!(path, "/events/batch");
        let v: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v["events"][1]["ts"], 7);
        let (_, body) = prepare(r#"{"ts":1}"#, true, 99).unwrap();
        assert_eq!(serde_json::from_slice::<Value>(&body).unwrap()["ts"], 1);
    }

    #[test]
    fn a_batch_with_a_refused_event_is_not_a_success() {
        assert!(nothing_rejected(r#"{"eventId":"e"}"#));
        assert!(nothing_rejected(
            r#"{"accepted":2,"rejected":0,"results":[]}"#
        ));
        assert!(!nothing_rejected(
            r#"{"accepted":0,"rejected":3,"results":[]}"#
        ));
        assert!(nothing_rejected("not json"));
    }
}
