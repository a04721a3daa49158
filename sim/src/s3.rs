//! A minimal path-style S3 (PUT/GET/HEAD/DELETE object, MD5 ETags): just enough for packages
//! to have real source objects that CreatePackage and UpdatePackage read.

use std::collections::BTreeMap;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::put;
use md5::{Digest, Md5};
use serde::{Deserialize, Serialize};

use crate::service::Sim;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Object {
    #[serde(with = "bytes_as_hex")]
    pub bytes: Bytes,
    /// Quoted hex MD5, as S3 sends it.
    pub etag: String,
}

/// Objects by (bucket, key). Buckets spring into existence with their first object.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ObjectStore {
    objects: BTreeMap<String, BTreeMap<String, Object>>,
}

impl ObjectStore {
    pub fn put(&mut self, bucket: &str, key: &str, bytes: Bytes) -> String {
        let etag = format!("\"{}\"", hex::encode(Md5::digest(&bytes)));
        self.objects.entry(bucket.to_string()).or_default().insert(
            key.to_string(),
            Object {
                bytes,
                etag: etag.clone(),
            },
        );
        etag
    }

    pub fn get(&self, bucket: &str, key: &str) -> Option<&Object> {
        self.objects.get(bucket)?.get(key)
    }

    pub fn delete(&mut self, bucket: &str, key: &str) -> bool {
        self.objects
            .get_mut(bucket)
            .and_then(|b| b.remove(key))
            .is_some()
    }

    pub fn clear(&mut self) {
        self.objects.clear();
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

async fn put_object(
    State(sim): State<Sim>,
    Path((bucket, key)): Path<(String, String)>,
    body: Bytes,
) -> Response {
    let etag = sim.lock().objects.put(&bucket, &key, body);
    etag_response(StatusCode::OK, &etag, None)
}

async fn get_object(
    State(sim): State<Sim>,
    Path((bucket, key)): Path<(String, String)>,
) -> Response {
    let object = sim.lock().objects.get(&bucket, &key).cloned();
    match object {
        Some(o) => etag_response(StatusCode::OK, &o.etag, Some(o.bytes)),
        None => no_such_key(&bucket, &key),
    }
}

async fn head_object(
    State(sim): State<Sim>,
    Path((bucket, key)): Path<(String, String)>,
) -> Response {
    let object = sim.lock().objects.get(&bucket, &key).cloned();
    match object {
        Some(o) => {
            let mut response = etag_response(StatusCode::OK, &o.etag, None);
            response
                .headers_mut()
                .insert(header::CONTENT_LENGTH, HeaderValue::from(o.bytes.len()));
            response
        }
        None => StatusCode::NOT_FOUND.into_response(),
    }
}

async fn delete_object(
    State(sim): State<Sim>,
    Path((bucket, key)): Path<(String, String)>,
) -> StatusCode {
    sim.lock().objects.delete(&bucket, &key);
    StatusCode::NO_CONTENT
}

fn etag_response(status: StatusCode, etag: &str, body: Option<Bytes>) -> Response {
    let mut headers = HeaderMap::new();
    if let Ok(v) = HeaderValue::from_str(etag) {
        headers.insert(header::ETAG, v);
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
