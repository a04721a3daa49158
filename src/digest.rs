//! The spec digest and the commit-message marker that make UpdatePackage exactly-once.
//!
//! UpdatePackage is not idempotent: every call makes a new version. The operator calls it at
//! most once per distinct digest of the fields that feed it, and tags each call's commit
//! message with a marker derived from that digest, so that after a crash the version history
//! tells whether the call already happened.

use serde::Serialize;
use sha2::{Digest as _, Sha256};

use crate::crd::{OpenSearchPackageSpec, PackageConfiguration, PackageEncryption};

/// The service's limit on a commit message.
pub const MAX_COMMIT_MESSAGE: usize = 160;

/// Hex characters of the digest carried in the marker.
const MARKER_HEX: usize = 8;

/// A stable hash over exactly the spec fields that feed CreatePackage/UpdatePackage.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct SpecDigest(String);

/// The fields in the digest, in a fixed order. `commitMessage` is deliberately absent: a
/// change of the message alone must not create a version.
#[derive(Serialize)]
struct UpdateRelevant<'a> {
    bucket: &'a str,
    key: &'a str,
    revision: Option<&'a str>,
    description: Option<&'a str>,
    configuration: Option<&'a PackageConfiguration>,
    encryption: Option<&'a PackageEncryption>,
    /// The source object's version for an object that follows its content. Absent otherwise,
    /// so the digest of every other object is what it was before following existed.
    #[serde(skip_serializing_if = "Option::is_none")]
    content: Option<Content<'a>>,
}

/// The identity of an S3 object version in the digest.
#[derive(Serialize)]
struct Content<'a> {
    etag: &'a str,
    version_id: Option<&'a str>,
}

impl SpecDigest {
    pub fn of(spec: &OpenSearchPackageSpec) -> Self {
        Self::digest(spec, None)
    }

    /// The digest of a spec whose source object is followed, at this object version (ETag,
    /// and VersionId in a versioned bucket): a new version of the file is a new digest.
    pub fn following(spec: &OpenSearchPackageSpec, etag: &str, version_id: Option<&str>) -> Self {
        Self::digest(spec, Some(Content { etag, version_id }))
    }

    fn digest(spec: &OpenSearchPackageSpec, content: Option<Content<'_>>) -> Self {
        let fields = UpdateRelevant {
            bucket: &spec.source.s3_bucket_name,
            key: &spec.source.s3_key,
            revision: spec.source.revision.as_deref(),
            description: spec.description.as_deref(),
            configuration: spec.configuration.as_ref(),
            encryption: spec.encryption.as_ref(),
            content,
        };
        // Serializing plain structs and Options to JSON cannot fail; the fallback keeps the
        // function total without a panic path.
        let bytes = serde_json::to_vec(&fields).unwrap_or_default();
        Self(format!("sha256:{}", hex::encode(Sha256::digest(&bytes))))
    }

    /// Wraps a digest read back from status.
    pub fn from_status(value: &str) -> Self {
        Self(value.to_owned())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The marker appended to every UpdatePackage commit message, e.g. ` [ospkg:3f9a1c0e]`.
    pub fn marker(&self) -> String {
        let hex = self.0.strip_prefix("sha256:").unwrap_or(&self.0);
        let short: String = hex.chars().take(MARKER_HEX).collect();
        format!("[ospkg:{short}]")
    }

    /// Whether a commit message carries this digest's marker.
    pub fn is_marked_in(&self, commit_message: &str) -> bool {
        commit_message.trim_end().ends_with(&self.marker())
    }

    /// The commit message sent with UpdatePackage: the user's message first, shortened if it
    /// must be, then the marker; at most [`MAX_COMMIT_MESSAGE`] characters.
    pub fn commit_message(&self, user_message: Option<&str>) -> String {
        self.commit_message_tagged(user_message, None)
    }

    /// [`Self::commit_message`] with `tag` (which source object version the import reads, e.g.
    /// `[s3 etag:9b2cf535]`) between the user's message and the marker.
    pub fn commit_message_tagged(&self, user_message: Option<&str>, tag: Option<&str>) -> String {
        let marker = match tag {
            Some(tag) => format!("{tag} {}", self.marker()),
            None => self.marker(),
        };
        let user = user_message.map(str::trim).unwrap_or_default();
        if user.is_empty() {
            return marker;
        }
        let room = MAX_COMMIT_MESSAGE - marker.chars().count() - 1;
        let user: String = if user.chars().count() > room {
            let mut cut: String = user.chars().take(room - 1).collect();
            cut.push('…');
            cut
        } else {
            user.to_owned()
        };
        format!("{user} {marker}")
    }
}

impl std::fmt::Display for SpecDigest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::{PackageSource, PackageType, RequirementLevel};

    fn spec() -> OpenSearchPackageSpec {
        serde_json::from_value(serde_json::json!({
            "packageType": "TXT-DICTIONARY",
            "source": {"s3BucketName": "acme-dicts", "s3Key": "synonyms.txt"},
        }))
        .expect("valid spec")
    }

    #[test]
    fn digest_is_stable_and_prefixed() {
        let a = SpecDigest::of(&spec());
        assert_eq!(a, SpecDigest::of(&spec()));
        assert!(a.as_str().starts_with("sha256:"));
        assert_eq!(a.as_str().len(), "sha256:".len() + 64);
    }

    #[test]
    fn every_update_relevant_field_changes_the_digest() {
        let base = SpecDigest::of(&spec());
        type Change = Box<dyn Fn(&mut OpenSearchPackageSpec)>;
        let changes: Vec<(&str, Change)> = vec![
            (
                "bucket",
                Box::new(|s| s.source.s3_bucket_name = "other".into()),
            ),
            ("key", Box::new(|s| s.source.s3_key = "other.txt".into())),
            (
                "revision",
                Box::new(|s| s.source.revision = Some("2".into())),
            ),
            (
                "description",
                Box::new(|s| s.description = Some("d".into())),
            ),
            (
                "configuration",
                Box::new(|s| {
                    s.configuration = Some(PackageConfiguration {
                        license_requirement: RequirementLevel::None,
                        configuration_requirement: RequirementLevel::Optional,
                        license_filepath: None,
                        requires_restart_for_configuration_update: None,
                    })
                }),
            ),
            (
                "encryption",
                Box::new(|s| {
                    s.encryption = Some(PackageEncryption {
                        enabled: true,
                        kms_key_identifier: None,
                    })
                }),
            ),
        ];
        for (field, change) in changes {
            let mut changed = spec();
            change(&mut changed);
            assert_ne!(
                SpecDigest::of(&changed),
                base,
                "{field} must change the digest"
            );
        }
    }

    #[test]
    fn the_followed_object_version_is_part_of_the_digest() {
        let spec = spec();
        let plain = SpecDigest::of(&spec);
        let v1 = SpecDigest::following(&spec, "\"aaa\"", None);
        assert_ne!(v1, plain, "following adds the object version");
        assert_eq!(v1, SpecDigest::following(&spec, "\"aaa\"", None));
        assert_ne!(v1, SpecDigest::following(&spec, "\"bbb\"", None), "ETag");
        assert_ne!(
            SpecDigest::following(&spec, "\"aaa\"", Some("v1")),
            SpecDigest::following(&spec, "\"aaa\"", Some("v2")),
            "VersionId"
        );
        // The digest of an object that does not follow its source is unchanged by the
        // feature: objects made before it existed keep their applied digest.
        assert_eq!(
            plain.as_str(),
            format!(
                "sha256:{}",
                hex::encode(Sha256::digest(
                    br#"{"bucket":"acme-dicts","key":"synonyms.txt","revision":null,"description":null,"configuration":null,"encryption":null}"#
                ))
            )
        );
    }

    #[test]
    fn a_source_tag_goes_between_the_message_and_the_marker() {
        let d = SpecDigest::of(&spec());
        let tag = "[s3 etag:9b2cf535]";
        let msg = d.commit_message_tagged(Some("New terms"), Some(tag));
        assert_eq!(msg, format!("New terms {tag} {}", d.marker()));
        assert!(d.is_marked_in(&msg));
        assert_eq!(
            d.commit_message_tagged(None, Some(tag)),
            format!("{tag} {}", d.marker())
        );
        let long = "y".repeat(400);
        let msg = d.commit_message_tagged(Some(&long), Some(tag));
        assert_eq!(msg.chars().count(), MAX_COMMIT_MESSAGE);
        assert!(msg.ends_with(&format!("… {tag} {}", d.marker())), "{msg}");
    }

    #[test]
    fn fields_outside_the_update_leave_the_digest_alone() {
        let base = SpecDigest::of(&spec());
        let mut changed = spec();
        changed.commit_message = Some("new words".into());
        changed.suspend = true;
        changed.adopt_existing = true;
        changed.package_type = PackageType::TxtDictionary;
        changed.source = PackageSource { ..changed.source };
        assert_eq!(SpecDigest::of(&changed), base);
    }

    #[test]
    fn commit_message_carries_the_marker_and_fits() {
        let d = SpecDigest::of(&spec());
        let msg = d.commit_message(Some("Add winter terms"));
        assert!(msg.starts_with("Add winter terms ["));
        assert!(d.is_marked_in(&msg));
        assert_eq!(d.commit_message(None), d.marker());

        let long = "x".repeat(400);
        let msg = d.commit_message(Some(&long));
        assert_eq!(msg.chars().count(), MAX_COMMIT_MESSAGE);
        assert!(d.is_marked_in(&msg));

        let other = SpecDigest::from_status("sha256:ffffffff");
        assert!(!other.is_marked_in(&msg));
    }
}
