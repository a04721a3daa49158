//! The simulator's S3 as a client that follows an object sees it: ETag, VersionId and
//! Last-Modified on HEAD, overwrites, delete markers, buckets in another region (301 with
//! `x-amz-bucket-region`), denied keys (403), and S3 calls counted and logged.

mod common;

use common::{raw, sim};
use ospkg_sim::BucketSettings;

fn s3_auth(region: &str) -> String {
    format!(
        "AWS4-HMAC-SHA256 Credential=AKIDS3/20240101/{region}/s3/aws4_request, SignedHeaders=host;x-amz-date, Signature=0000"
    )
}

fn header(headers: &http::HeaderMap, name: &str) -> Option<String> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}

#[tokio::test]
async fn head_reports_etag_and_last_modified_and_an_overwrite_changes_them() {
    let sim = sim().await;
    let admin = sim.admin();
    let url = format!("{}/dicts/synonyms.txt", sim.s3_endpoint());
    let first = admin
        .put_object("dicts", "synonyms.txt", b"tv, television\n".to_vec())
        .await
        .unwrap();
    let (status, headers, body) = raw(&url, "HEAD", None, "").await;
    assert_eq!(status, 200);
    assert!(body.is_empty(), "HEAD has no body");
    assert_eq!(header(&headers, "etag"), Some(first.clone()));
    assert_eq!(header(&headers, "x-amz-version-id"), None, "not versioned");
    let modified = header(&headers, "last-modified").expect("Last-Modified");
    assert!(modified.ends_with(" GMT"), "{modified}");

    admin.advance_clock(61_000).await.unwrap();
    let same = admin
        .put_object("dicts", "synonyms.txt", b"tv, television\n".to_vec())
        .await
        .unwrap();
    assert_eq!(same, first, "identical bytes, identical ETag");
    let changed = admin
        .put_object("dicts", "synonyms.txt", b"tv, telly\n".to_vec())
        .await
        .unwrap();
    assert_ne!(changed, first);
    let (_, headers, _) = raw(&url, "HEAD", None, "").await;
    assert_eq!(header(&headers, "etag"), Some(changed));
    assert_ne!(header(&headers, "last-modified"), Some(modified));

    admin.delete_object("dicts", "synonyms.txt").await.unwrap();
    let (status, headers, _) = raw(&url, "HEAD", None, "").await;
    assert_eq!(status, 404);
    assert_eq!(header(&headers, "x-amz-delete-marker"), None);
}

#[tokio::test]
async fn a_versioned_bucket_gives_every_put_a_version_and_leaves_a_delete_marker() {
    let sim = sim().await;
    let admin = sim.admin();
    let versioned = BucketSettings {
        versioned: true,
        ..BucketSettings::default()
    };
    admin.set_bucket("history", &versioned).await.unwrap();
    assert_eq!(
        admin.buckets().await.unwrap().get("history"),
        Some(&versioned)
    );
    let (etag_1, v1) = admin
        .put_object_version("history", "a.txt", b"one".to_vec())
        .await
        .unwrap();
    let (etag_2, v2) = admin
        .put_object_version("history", "a.txt", b"one".to_vec())
        .await
        .unwrap();
    assert_eq!(etag_1, etag_2);
    let (v1, v2) = (v1.expect("a VersionId"), v2.expect("a VersionId"));
    assert_ne!(v1, v2);
    let url = format!("{}/history/a.txt", sim.s3_endpoint());
    let (status, headers, _) = raw(&url, "HEAD", None, "").await;
    assert_eq!(status, 200);
    assert_eq!(header(&headers, "x-amz-version-id"), Some(v2.clone()));

    // A PUT through the S3 listener is a version too.
    let (status, headers, _) = raw(&url, "PUT", None, "two").await;
    assert_eq!(status, 200);
    let v3 = header(&headers, "x-amz-version-id").expect("VersionId");
    assert!(v3 != v1 && v3 != v2);

    let (status, _, _) = raw(&url, "DELETE", None, "").await;
    assert_eq!(status, 204);
    let (status, headers, _) = raw(&url, "HEAD", None, "").await;
    assert_eq!(status, 404);
    assert_eq!(
        header(&headers, "x-amz-delete-marker").as_deref(),
        Some("true")
    );
    let (status, _, body) = raw(&url, "GET", None, "").await;
    assert_eq!(status, 404);
    assert!(body.contains("NoSuchKey"));
}

#[tokio::test]
async fn a_bucket_in_another_region_redirects_requests_signed_for_this_one() {
    let sim = sim().await;
    let admin = sim.admin();
    admin
        .set_bucket(
            "frankfurt",
            &BucketSettings {
                region: Some("eu-central-1".into()),
                ..BucketSettings::default()
            },
        )
        .await
        .unwrap();
    admin
        .put_object("frankfurt", "k.txt", b"x".to_vec())
        .await
        .unwrap();
    let url = format!("{}/frankfurt/k.txt", sim.s3_endpoint());
    let (status, headers, body) = raw(&url, "HEAD", Some(&s3_auth("us-east-1")), "").await;
    assert_eq!(status, 301);
    assert_eq!(
        header(&headers, "x-amz-bucket-region").as_deref(),
        Some("eu-central-1")
    );
    assert!(body.is_empty());
    let (status, _, body) = raw(&url, "GET", Some(&s3_auth("us-east-1")), "").await;
    assert_eq!(status, 301);
    assert!(body.contains("PermanentRedirect"), "{body}");
    let (status, _, _) = raw(&url, "HEAD", Some(&s3_auth("eu-central-1")), "").await;
    assert_eq!(status, 200);
}

#[tokio::test]
async fn denied_keys_answer_403_and_every_s3_call_is_counted_and_logged() {
    let sim = sim().await;
    let admin = sim.admin();
    admin
        .put_object("locked", "secret.txt", b"x".to_vec())
        .await
        .unwrap();
    admin
        .put_object("locked", "open.txt", b"y".to_vec())
        .await
        .unwrap();
    admin
        .set_bucket(
            "locked",
            &BucketSettings {
                deny: vec!["secret.txt".into()],
                ..BucketSettings::default()
            },
        )
        .await
        .unwrap();
    let base = sim.s3_endpoint();
    let auth = s3_auth("us-east-1");
    let (status, _, body) = raw(
        &format!("{base}/locked/secret.txt"),
        "HEAD",
        Some(&auth),
        "",
    )
    .await;
    assert_eq!((status, body.as_str()), (403, ""));
    let (status, _, body) = raw(&format!("{base}/locked/secret.txt"), "GET", Some(&auth), "").await;
    assert_eq!(status, 403);
    assert!(body.contains("AccessDenied"), "{body}");
    let (status, _, _) = raw(&format!("{base}/locked/open.txt"), "HEAD", Some(&auth), "").await;
    assert_eq!(status, 200);

    // The whole bucket.
    admin
        .set_bucket(
            "locked",
            &BucketSettings {
                deny: vec!["*".into()],
                ..BucketSettings::default()
            },
        )
        .await
        .unwrap();
    let (status, _, _) = raw(&format!("{base}/locked/open.txt"), "HEAD", None, "").await;
    assert_eq!(status, 403);
    // Granted again.
    admin
        .set_bucket("locked", &BucketSettings::default())
        .await
        .unwrap();
    let (status, _, _) = raw(&format!("{base}/locked/secret.txt"), "HEAD", None, "").await;
    assert_eq!(status, 200);

    let calls = admin.calls().await.unwrap();
    assert_eq!(calls.get("HeadObject"), Some(&4), "{calls:?}");
    assert_eq!(calls.get("GetObject"), Some(&1), "{calls:?}");
    assert_eq!(calls.get("PutObject"), None, "admin PUTs are not S3 calls");
    let log = admin.log().await.unwrap();
    let heads: Vec<_> = log
        .iter()
        .filter(|e| e.operation.as_deref() == Some("HeadObject"))
        .collect();
    assert_eq!(heads.len(), 4);
    let first = heads[0];
    assert_eq!(first.bucket.as_deref(), Some("locked"));
    assert_eq!(first.key.as_deref(), Some("secret.txt"));
    assert_eq!(first.status, Some(403));
    assert_eq!(first.error_code.as_deref(), Some("AccessDenied"));
    assert_eq!(first.region, "us-east-1");
    assert_eq!(first.access_key_id.as_deref(), Some("AKIDS3"));
    assert_eq!(heads[1].status, Some(200));
    assert_eq!(heads[2].status, Some(403));
}

#[tokio::test]
async fn the_package_dump_names_the_object_version_each_import_read() {
    let sim = sim().await;
    let admin = sim.admin();
    admin
        .set_bucket(
            "dicts",
            &BucketSettings {
                versioned: true,
                ..BucketSettings::default()
            },
        )
        .await
        .unwrap();
    let (etag, version) = admin
        .put_object_version("dicts", "s.txt", b"a, b\n".to_vec())
        .await
        .unwrap();
    let client = common::client(&sim);
    client
        .create_package()
        .package_name("dump")
        .package_type(aws_sdk_opensearch::types::PackageType::TxtDictionary)
        .package_source(common::source("dicts", "s.txt"))
        .send()
        .await
        .unwrap();
    let dump = admin.packages().await.unwrap();
    let package = dump["scopes"][0]["packages"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["details"]["PackageName"] == "dump")
        .unwrap()
        .clone();
    let revision = &package["revisions"][0];
    assert_eq!(revision["etag"], etag.as_str());
    assert_eq!(revision["versionId"], version.unwrap().as_str());
    assert_eq!(revision["status"], "COPYING");
    assert_eq!(revision["version"], "v1");
}

/// The service reads the source with the caller's rights: a key S3 refuses to read cannot be
/// imported either, and the package ends in COPY_FAILED as for a missing object.
#[tokio::test]
async fn a_denied_key_is_not_imported() {
    let sim = sim().await;
    let client = common::client(&sim);
    sim.admin()
        .set_bucket(
            "pkgs",
            &BucketSettings {
                deny: vec!["secret.txt".into()],
                ..BucketSettings::default()
            },
        )
        .await
        .unwrap();
    // Stores pkgs/secret.txt (the admin API is not refused) and imports it.
    let id = common::create_dictionary(&sim, &client, "secret").await;
    sim.admin()
        .advance_clock(common::DURATIONS.copying_ms + common::DURATIONS.validating_ms)
        .await
        .unwrap();
    let details = common::describe(&client, &id).await;
    assert_eq!(common::status(&details), "COPY_FAILED");
    let error = details.error_details().expect("error details");
    assert_eq!(error.error_type(), Some("S3ObjectNotFound"));
}
