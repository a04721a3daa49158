//! What the service finds when it copies a package's S3 object: whether it can be read, and
//! whether its contents fit the package type (plugin zip with a descriptor built for the
//! package's engine version, UTF-8 dictionary).

use std::io::{Cursor, Read};

use crate::wire::{ErrorDetails, PackageType, PluginProperties};

/// Name of the descriptor every OpenSearch plugin zip carries at its root.
pub const PLUGIN_DESCRIPTOR: &str = "plugin-descriptor.properties";

/// Outcome of copying and validating one snapshot of the source object.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Inspection {
    Valid { plugin: Option<PluginProperties> },
    CopyFailed(ErrorDetails),
    ValidationFailed(ErrorDetails),
}

/// `engine_version` is the package's `EngineVersion` (ZIP-PLUGIN only).
pub fn inspect(
    package_type: PackageType,
    engine_version: Option<&str>,
    bucket: &str,
    key: &str,
    bytes: Option<&[u8]>,
) -> Inspection {
    let Some(bytes) = bytes else {
        return Inspection::CopyFailed(ErrorDetails {
            error_type: "S3ObjectNotFound".to_string(),
            error_message: format!(
                "The specified S3 object s3://{bucket}/{key} does not exist or could not be read."
            ),
        });
    };
    match package_type {
        PackageType::TxtDictionary => match std::str::from_utf8(bytes) {
            Ok(_) => Inspection::Valid { plugin: None },
            Err(e) => Inspection::ValidationFailed(ErrorDetails {
                error_type: "DictionaryValidationFailure".to_string(),
                error_message: format!(
                    "The dictionary file is not valid UTF-8 text (first invalid byte at offset {}).",
                    e.valid_up_to()
                ),
            }),
        },
        PackageType::ZipPlugin => match read_plugin(bytes).and_then(|(plugin, built_for)| {
            check_engine(built_for.as_deref(), engine_version)?;
            Ok(plugin)
        }) {
            Ok(plugin) => Inspection::Valid {
                plugin: Some(plugin),
            },
            Err(reason) => Inspection::ValidationFailed(ErrorDetails {
                error_type: "PluginValidationFailure".to_string(),
                error_message: format!("PluginValidationFailureReason : {reason}"),
            }),
        },
        // Licence and configuration files are opaque to the service.
        PackageType::PackageLicense | PackageType::PackageConfig => {
            Inspection::Valid { plugin: None }
        }
    }
}

/// Reads the plugin descriptor out of a zip: the properties and the descriptor's
/// `opensearch.version`, if it has one. The error is the human reason for the failure.
pub fn read_plugin(bytes: &[u8]) -> Result<(PluginProperties, Option<String>), String> {
    let mut archive = zip::ZipArchive::new(Cursor::new(bytes))
        .map_err(|e| format!("The plugin file is not a valid zip archive ({e})."))?;
    let mut uncompressed: u64 = 0;
    let mut descriptor_index = None;
    for i in 0..archive.len() {
        let entry = archive
            .by_index_raw(i)
            .map_err(|e| format!("The plugin zip cannot be read ({e})."))?;
        uncompressed = uncompressed.saturating_add(entry.size());
        if entry.name() == PLUGIN_DESCRIPTOR {
            descriptor_index = Some(i);
        }
    }
    let index = descriptor_index
        .ok_or_else(|| format!("The plugin zip does not contain {PLUGIN_DESCRIPTOR}."))?;
    let mut text = String::new();
    archive
        .by_index(index)
        .map_err(|e| format!("{PLUGIN_DESCRIPTOR} cannot be read ({e})."))?
        .read_to_string(&mut text)
        .map_err(|e| format!("{PLUGIN_DESCRIPTOR} is not readable text ({e})."))?;
    let props = parse_properties(&text);
    let field = |name: &str| {
        props
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
    };
    let required = |name: &str| {
        field(name).filter(|v| !v.is_empty()).ok_or_else(|| {
            format!("{PLUGIN_DESCRIPTOR} is missing the required property '{name}'.")
        })
    };
    let plugin = PluginProperties {
        name: required("name")?,
        description: field("description").unwrap_or_default(),
        version: required("version")?,
        class_name: required("classname")?,
        uncompressed_size_in_bytes: uncompressed,
    };
    Ok((plugin, field("opensearch.version")))
}

/// A plugin is built for one OpenSearch release; the service refuses it for a package of
/// another engine version (major.minor compared; a descriptor without `opensearch.version`
/// is not checked).
fn check_engine(built_for: Option<&str>, engine_version: Option<&str>) -> Result<(), String> {
    let (Some(built_for), Some(engine)) = (built_for, engine_version) else {
        return Ok(());
    };
    let engine_release = engine.strip_prefix("OpenSearch_").and_then(major_minor);
    if engine_release.is_some() && engine_release == major_minor(built_for) {
        return Ok(());
    }
    Err(format!(
        "The plugin was built for OpenSearch {built_for} (opensearch.version in {PLUGIN_DESCRIPTOR}), which does not match the package's engine version {engine}."
    ))
}

/// `2.15.0` → (2, 15).
fn major_minor(version: &str) -> Option<(u32, u32)> {
    let mut parts = version.trim().split('.');
    let major = parts.next()?.parse().ok()?;
    let minor = parts.next()?.parse().ok()?;
    Some((major, minor))
}

/// Java `.properties` lines: `key=value` or `key: value`, `#`/`!` comments.
fn parse_properties(text: &str) -> Vec<(String, String)> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#') && !l.starts_with('!'))
        .filter_map(|line| {
            let split = line.find(['=', ':'])?;
            Some((
                line[..split].trim().to_string(),
                line[split + 1..].trim().to_string(),
            ))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn properties_accept_both_separators_and_comments() {
        let props = parse_properties("# c\nname = a\nclassname: org.X\n\n!x\nversion=1=2\n");
        assert_eq!(
            props,
            vec![
                ("name".into(), "a".into()),
                ("classname".into(), "org.X".into()),
                ("version".into(), "1=2".into())
            ]
        );
    }

    #[test]
    fn missing_object_is_copy_failure_and_bad_text_is_validation_failure() {
        assert!(matches!(
            inspect(PackageType::TxtDictionary, None, "b", "k", None),
            Inspection::CopyFailed(_)
        ));
        assert!(matches!(
            inspect(
                PackageType::TxtDictionary,
                None,
                "b",
                "k",
                Some(&[0xff, 0xfe])
            ),
            Inspection::ValidationFailed(_)
        ));
        assert!(matches!(
            inspect(
                PackageType::ZipPlugin,
                Some("OpenSearch_2.19"),
                "b",
                "k",
                Some(b"not a zip")
            ),
            Inspection::ValidationFailed(_)
        ));
        assert!(matches!(
            inspect(PackageType::PackageConfig, None, "b", "k", Some(&[0xff])),
            Inspection::Valid { plugin: None }
        ));
    }

    #[test]
    fn plugin_must_be_built_for_the_engine_release() {
        assert_eq!(
            check_engine(Some("2.19.0"), Some("OpenSearch_2.19")),
            Ok(())
        );
        assert_eq!(
            check_engine(Some("2.19.3"), Some("OpenSearch_2.19")),
            Ok(())
        );
        assert_eq!(check_engine(None, Some("OpenSearch_2.19")), Ok(()));
        let e = check_engine(Some("2.15.0"), Some("OpenSearch_2.19")).unwrap_err();
        assert!(e.contains("2.15.0") && e.contains("OpenSearch_2.19"), "{e}");
        assert!(check_engine(Some("2.1.0"), Some("OpenSearch_2.19")).is_err());
        assert!(check_engine(Some("7.10.2"), Some("Elasticsearch_7.10")).is_err());
        assert!(check_engine(Some("latest"), Some("OpenSearch_2.19")).is_err());
    }
}
