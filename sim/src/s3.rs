//! A minimal path-style S3 (PUT/GET/HEAD/DELETE object, MD5 ETags): just enough for packages
//! to have real source objects that CreatePackage and UpdatePackage read, and for clients that
//! follow an object's version with HeadObject.
//!
//! Per bucket (admin API): a region (a request signed for another region is answered
//! `301 Moved Permanently` with `x-amz-bucket-region`, as S3 does), versioning (every PUT makes
//! a new `VersionId`; DELETE leaves a delete marker), and keys that are denied (`403`). Calls
//! through this listener are counted and logged like the package operations (`HeadObject`,
//! `GetObject`, `PutObject`, `DeleteObject`); the admin API's object routes are not.

use std::collections::BTreeMap;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::put;
use md5::{Digest, Md5};
use serde::{Deserialize, Serialize};

use crate::journal::{EntryKind, LogEntry};
use crate::service::Sim;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Object {
    #[serde(with = "bytes_as_hex")]
    pub bytes: Bytes,
    /// Quoted hex MD5, as S3 sends it.
    pub etag: String,
    /// The VersionId, in a versioned bucket.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version_id: Option<String>,
    /// Simulated epoch milliseconds of the PUT.
    #[serde(default)]
    pub last_modified_ms: u64,
    /// A delete marker (versioned buckets): the object reads as missing.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub delete_marker: bool,
}

/// What a bucket is like; every member is optional in the admin API.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct BucketSettings {
    /// The bucket's region; `None`: it answers requests signed for any region.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    /// Versioning enabled: every PUT makes a new VersionId.
    pub versioned: bool,
    /// Keys every request is denied on (403 AccessDenied); `"*"` denies the whole bucket.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub deny: Vec<String>,
}

impl BucketSettings {
    fn denies(&self, key: &str) -> bool {
        self.deny.iter().any(|d| d == "*" || d == key)
    }
}

/// Objects by (bucket, key). Buckets spring into existence with their first object.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ObjectStore {
    objects: BTreeMap<String, BTreeMap<String, Object>>,
    #[serde(default)]
    buckets: BTreeMap<String, BucketSettings>,
    #[serde(default)]
    next_version: u64,
}

impl ObjectStore {
    /// Stores an object at simulated time `now_ms` and returns it.
    pub fn put(&mut self, bucket: &str, key: &str, bytes: Bytes, now_ms: u64) -> Object {
        let etag = format!("\"{}\"", hex::encode(Md5::digest(&bytes)));
        let version_id = self.new_version(bucket);
        let object = Object {
            bytes,
            etag,
            version_id,
            last_modified_ms: now_ms,
            delete_marker: false,
        };
        self.objects
            .entry(bucket.to_string())
            .or_default()
            .insert(key.to_string(), object.clone());
        object
    }

    /// The object's current version; `None` when it does not exist or is a delete marker.
    pub fn get(&self, bucket: &str, key: &str) -> Option<&Object> {
        self.current(bucket, key).filter(|o| !o.delete_marker)
    }

    /// The object as a caller that S3 lets read it sees it: none on a denied key.
    pub fn readable(&self, bucket: &str, key: &str) -> Option<&Object> {
        let denied = self.buckets.get(bucket).is_some_and(|b| b.denies(key));
        self.get(bucket, key).filter(|_| !denied)
    }

    fn current(&self, bucket: &str, key: &str) -> Option<&Object> {
        self.objects.get(bucket)?.get(key)
    }

    /// Deletes the object; in a versioned bucket a delete marker takes its place. Whether
    /// there was an object to delete.
    pub fn delete(&mut self, bucket: &str, key: &str, now_ms: u64) -> bool {
        let existed = self.get(bucket, key).is_some();
        if self.settings(bucket).versioned {
            let version_id = self.new_version(bucket);
            self.objects.entry(bucket.to_string()).or_default().insert(
                key.to_string(),
                Object {
                    bytes: Bytes::new(),
                    etag: String::new(),
                    version_id,
                    last_modified_ms: now_ms,
                    delete_marker: true,
                },
            );
        } else if let Some(objects) = self.objects.get_mut(bucket) {
            objects.remove(key);
        }
        existed
    }

    pub fn settings(&self, bucket: &str) -> BucketSettings {
        self.buckets.get(bucket).cloned().unwrap_or_default()
    }

    pub fn set_settings(&mut self, bucket: &str, settings: BucketSettings) {
        self.buckets.insert(bucket.to_string(), settings);
    }

    pub fn buckets(&self) -> BTreeMap<String, BucketSettings> {
        self.buckets.clone()
    }

    /// Empties the store and forgets every bucket's settings.
    pub fn clear(&mut self) {
        *self = ObjectStore::default();
    }

    fn new_version(&mut self, bucket: &str) -> Option<String> {
        if !self.settings(bucket).versioned {
            return None;
        }
        self.next_version += 1;
        // Opaque like S3's (32 characters), and in creation order.
        Some(format!("sim{:029}", self.next_version))
    }
}

pub fn router(sim: Sim) -> Router {
    Router::new()
        .route("/{bucket}", put(create_bucket).head(head_bucket))
        .route(
            "/{bucket}/{*key}",
            put(put_object)
                .get(get_object)
                .head(head_object)
                .delete(delete_object),
        )
        .with_state(sim)
}

async fn create_bucket() -> StatusCode {
    StatusCode::OK
}

async fn head_bucket() -> StatusCode {
    StatusCode::OK
}

/// The S3 operation a request makes, as the call log names it.
fn operation(method: &Method) -> &'static str {
    match *method {
        Method::HEAD => "HeadObject",
        Method::GET => "GetObject",
        Method::PUT => "PutObject",
        _ => "DeleteObject",
    }
}

/// The region and access key of a SigV4-signed request (`Credential=AKID/DATE/REGION/s3/…`);
/// anonymous requests are served too.
fn signer(headers: &HeaderMap) -> (Option<String>, Option<String>) {
    let credential = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|auth| auth.strip_prefix("AWS4-HMAC-SHA256"))
        .and_then(|params| {
            params
                .split(',')
                .map(str::trim)
                .find_map(|p| p.strip_prefix("Credential="))
        });
    let parts: Vec<&str> = credential
        .map(|c| c.split('/').collect())
        .unwrap_or_default();
    match parts.as_slice() {
        [key, _date, region, ..] => (Some((*region).to_string()), Some((*key).to_string())),
        _ => (None, None),
    }
}

/// Counts and logs one call, then checks the bucket's region and the denied keys: the answer
/// to give instead of serving the request, if any.
#[must_use]
fn admit(
    sim: &Sim,
    method: &Method,
    headers: &HeaderMap,
    bucket: &str,
    key: &str,
) -> Option<Response> {
    let op = operation(method);
    let (region, access_key_id) = signer(headers);
    let mut service = sim.lock();
    let settings = service.objects.settings(bucket);
    let scripted = service.faults.take_scripted(op);
    let fault = scripted.as_ref().map(|f| match f {
        crate::faults::ScriptedFault::Throttle => "throttle".to_owned(),
        _ => "internal".to_owned(),
    });
    let refusal = match (&settings.region, &region) {
        _ if scripted.is_some() => Some(injected(method, scripted)),
        (Some(home), Some(asked)) if home != asked => Some(moved(method, bucket, home)),
        _ if settings.denies(key) => Some(denied(method, bucket, key)),
        _ => None,
    };
    let status = refusal.as_ref().map(|r| r.status().as_u16());
    service.journal.count_call(op);
    let at_ms = service.elapsed(service.now());
    service.journal.push(LogEntry {
        seq: 0,
        at_ms,
        kind: EntryKind::Call,
        operation: Some(op.to_string()),
        account: String::new(),
        region: region.unwrap_or_default(),
        access_key_id,
        package_id: None,
        domain_name: None,
        bucket: Some(bucket.to_string()),
        key: Some(key.to_string()),
        // Served calls are logged with the status they are about to get below.
        status: status.or(Some(200)),
        error_code: refusal.as_ref().map(|r| error_code(r.status()).to_string()),
        association_status: None,
        fault,
        effect: false,
        commit_message: None,
        lookup: false,
        ..LogEntry::default()
    });
    refusal
}

fn error_code(status: StatusCode) -> &'static str {
    match status {
        StatusCode::MOVED_PERMANENTLY => "PermanentRedirect",
        StatusCode::FORBIDDEN => "AccessDenied",
        StatusCode::SERVICE_UNAVAILABLE => "SlowDown",
        StatusCode::INTERNAL_SERVER_ERROR => "InternalError",
        _ => "NoSuchKey",
    }
}

async fn put_object(
    State(sim): State<Sim>,
    method: Method,
    headers: HeaderMap,
    Path((bucket, key)): Path<(String, String)>,
    body: Bytes,
) -> Response {
    if let Some(refusal) = admit(&sim, &method, &headers, &bucket, &key) {
        return refusal;
    }
    let mut service = sim.lock();
    let now = service.now();
    let object = service.objects.put(&bucket, &key, body, now);
    service.dirty = true;
    object_response(StatusCode::OK, &object, None)
}

async fn get_object(
    State(sim): State<Sim>,
    method: Method,
    headers: HeaderMap,
    Path((bucket, key)): Path<(String, String)>,
) -> Response {
    if let Some(refusal) = admit(&sim, &method, &headers, &bucket, &key) {
        return refusal;
    }
    let object = sim.lock().objects.get(&bucket, &key).cloned();
    match object {
        Some(o) => object_response(StatusCode::OK, &o, Some(o.bytes.clone())),
        None => no_such_key(&bucket, &key),
    }
}

async fn head_object(
    State(sim): State<Sim>,
    method: Method,
    headers: HeaderMap,
    Path((bucket, key)): Path<(String, String)>,
) -> Response {
    if let Some(refusal) = admit(&sim, &method, &headers, &bucket, &key) {
        return refusal;
    }
    let current = sim.lock().objects.current(&bucket, &key).cloned();
    match current {
        Some(o) if !o.delete_marker => {
            let mut response = object_response(StatusCode::OK, &o, None);
            response
                .headers_mut()
                .insert(header::CONTENT_LENGTH, HeaderValue::from(o.bytes.len()));
            response
        }
        // S3 names the delete marker that hides the object.
        Some(marker) => {
            let mut response = StatusCode::NOT_FOUND.into_response();
            let headers = response.headers_mut();
            headers.insert("x-amz-delete-marker", HeaderValue::from_static("true"));
            if let Some(id) = marker.version_id.as_deref()
                && let Ok(v) = HeaderValue::from_str(id)
            {
                headers.insert("x-amz-version-id", v);
            }
            response
        }
        None => StatusCode::NOT_FOUND.into_response(),
    }
}

async fn delete_object(
    State(sim): State<Sim>,
    method: Method,
    headers: HeaderMap,
    Path((bucket, key)): Path<(String, String)>,
) -> Response {
    if let Some(refusal) = admit(&sim, &method, &headers, &bucket, &key) {
        return refusal;
    }
    let mut service = sim.lock();
    let now = service.now();
    service.objects.delete(&bucket, &key, now);
    service.dirty = true;
    StatusCode::NO_CONTENT.into_response()
}

fn object_response(status: StatusCode, object: &Object, body: Option<Bytes>) -> Response {
    let mut headers = HeaderMap::new();
    if let Ok(v) = HeaderValue::from_str(&object.etag) {
        headers.insert(header::ETAG, v);
    }
    if let Some(id) = object.version_id.as_deref()
        && let Ok(v) = HeaderValue::from_str(id)
    {
        headers.insert("x-amz-version-id", v);
    }
    if let Ok(v) = HeaderValue::from_str(&http_date(object.last_modified_ms)) {
        headers.insert(header::LAST_MODIFIED, v);
    }
    match body {
        Some(bytes) => {
            headers.insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/octet-stream"),
            );
            (status, headers, bytes).into_response()
        }
        None => (status, headers).into_response(),
    }
}

/// An RFC 7231 HTTP-date (`Tue, 01 Dec 2026 10:00:00 GMT`), as S3 writes `Last-Modified`.
fn http_date(epoch_ms: u64) -> String {
    let secs = epoch_ms / 1000;
    let days = secs / 86_400;
    let (hour, minute, second) = ((secs % 86_400) / 3600, (secs % 3600) / 60, secs % 60);
    // 1970-01-01 was a Thursday.
    let weekday = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"][(days % 7) as usize];
    let (year, month, day) = civil_from_days(days);
    let month = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ][(month - 1) as usize];
    format!("{weekday}, {day:02} {month} {year} {hour:02}:{minute:02}:{second:02} GMT")
}

/// (year, month 1-12, day 1-31) of a day count since 1970-01-01 (Howard Hinnant's algorithm).
pub(crate) fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + u64::from(month <= 2);
    (year, month, day)
}

/// The answer to a request for a bucket in another region: S3's `301 Moved Permanently` with
/// the bucket's region in `x-amz-bucket-region` (and, but for HEAD, a `PermanentRedirect`
/// body).
fn moved(method: &Method, bucket: &str, region: &str) -> Response {
    let body = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>PermanentRedirect</Code><Message>The bucket you are attempting to access must be addressed using the specified endpoint. Please send all future requests to this endpoint.</Message><Bucket>{bucket}</Bucket><Endpoint>s3.{region}.amazonaws.com</Endpoint></Error>"
    );
    let mut response = xml_error(StatusCode::MOVED_PERMANENTLY, method, body);
    if let Ok(v) = HeaderValue::from_str(region) {
        response.headers_mut().insert("x-amz-bucket-region", v);
    }
    response
}

/// A scripted fault: `throttle` is S3's 503 SlowDown, any other kind a 500 InternalError.
fn injected(method: &Method, fault: Option<crate::faults::ScriptedFault>) -> Response {
    if let Some(crate::faults::ScriptedFault::Throttle) = fault {
        let body = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>SlowDown</Code><Message>Please reduce your request rate. (injected by ospkg-sim)</Message></Error>";
        return xml_error(StatusCode::SERVICE_UNAVAILABLE, method, body.to_owned());
    }
    let body = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>InternalError</Code><Message>We encountered an internal error. Please try again. (injected by ospkg-sim)</Message></Error>";
    xml_error(StatusCode::INTERNAL_SERVER_ERROR, method, body.to_owned())
}

fn denied(method: &Method, bucket: &str, key: &str) -> Response {
    let body = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>AccessDenied</Code><Message>Access Denied (denied by ospkg-sim for s3://{bucket}/{key})</Message></Error>"
    );
    xml_error(StatusCode::FORBIDDEN, method, body)
}

/// An S3 error; answers to HEAD carry no body.
fn xml_error(status: StatusCode, method: &Method, body: String) -> Response {
    if *method == Method::HEAD {
        return status.into_response();
    }
    (status, [(header::CONTENT_TYPE, "application/xml")], body).into_response()
}

fn no_such_key(bucket: &str, key: &str) -> Response {
    let body = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>NoSuchKey</Code><Message>The specified key does not exist.</Message><Key>{key}</Key><BucketName>{bucket}</BucketName></Error>"
    );
    (
        StatusCode::NOT_FOUND,
        [(header::CONTENT_TYPE, "application/xml")],
        body,
    )
        .into_response()
}

/// Object bytes in the `--state` snapshot file.
mod bytes_as_hex {
    use axum::body::Bytes;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(bytes: &Bytes, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&hex::encode(bytes))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Bytes, D::Error> {
        let text = String::deserialize(d)?;
        hex::decode(text)
            .map(Bytes::from)
            .map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn http_dates_are_rfc_7231() {
        assert_eq!(http_date(0), "Thu, 01 Jan 1970 00:00:00 GMT");
        // 2026-11-29T22:58:07Z
        assert_eq!(
            http_date(1_795_993_087_000),
            "Sun, 29 Nov 2026 22:58:07 GMT"
        );
        assert_eq!(http_date(951_782_400_000), "Tue, 29 Feb 2000 00:00:00 GMT");
    }

    #[test]
    fn a_versioned_bucket_keeps_a_delete_marker() {
        let mut store = ObjectStore::default();
        store.set_settings(
            "b",
            BucketSettings {
                versioned: true,
                ..BucketSettings::default()
            },
        );
        let one = store.put("b", "k", Bytes::from_static(b"one"), 1);
        let two = store.put("b", "k", Bytes::from_static(b"one"), 2);
        assert_eq!(one.etag, two.etag, "same bytes, same ETag");
        assert_ne!(one.version_id, two.version_id, "a new version each PUT");
        assert!(store.delete("b", "k", 3));
        assert!(store.get("b", "k").is_none());
        assert!(store.current("b", "k").is_some_and(|o| o.delete_marker));
        assert!(!store.delete("b", "k", 4), "nothing left to delete");
        let plain = store.put("p", "k", Bytes::from_static(b"x"), 5);
        assert_eq!(plain.version_id, None);
        assert!(store.delete("p", "k", 6));
        assert!(store.current("p", "k").is_none());
    }
}
