//! Input validation (the rules listed in docs/aws-api.md): every refusal is a ValidationException
//! whose message names the member, in the wire's spelling (`PackageSource.S3Key`).

use serde_json::{Map, Value};

use crate::error::ApiError;
use crate::wire::*;

mod members;

use members::*;
pub use members::{domain_name, engine_version, max_results, package_id, package_name};

/// Largest page the model allows.
pub const MAX_RESULTS_LIMIT: i64 = 100;

/// A JSON object being read, remembering where it sits in the request for messages.
pub struct Body<'a> {
    obj: &'a Map<String, Value>,
    prefix: String,
}

/// Parses a request body; an empty body reads as `{}` (what the SDKs send for no members).
pub fn parse_json(bytes: &[u8]) -> Result<Map<String, Value>, ApiError> {
    if bytes.iter().all(|b| b.is_ascii_whitespace()) {
        return Ok(Map::new());
    }
    match serde_json::from_slice::<Value>(bytes) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(_) => Err(ApiError::Validation(
            "Request body must be a JSON object".to_string(),
        )),
        Err(e) => Err(ApiError::Validation(format!(
            "Request body is not well-formed JSON: {e}"
        ))),
    }
}

impl<'a> Body<'a> {
    pub fn new(obj: &'a Map<String, Value>) -> Self {
        Body {
            obj,
            prefix: String::new(),
        }
    }

    fn path(&self, key: &str) -> String {
        if self.prefix.is_empty() {
            key.to_string()
        } else {
            format!("{}.{key}", self.prefix)
        }
    }

    /// A member that is absent or JSON `null` counts as not given.
    fn get(&self, key: &str) -> Option<&'a Value> {
        self.obj.get(key).filter(|v| !v.is_null())
    }

    fn wrong_type(&self, key: &str, expected: &str) -> ApiError {
        ApiError::Validation(format!(
            "1 validation error detected: Value at '{}' failed to satisfy constraint: Member must be {expected}",
            self.path(key)
        ))
    }

    pub fn opt_str(&self, key: &str) -> Result<Option<String>, ApiError> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(_) => Err(self.wrong_type(key, "a string")),
        }
    }

    pub fn req_str(&self, key: &str) -> Result<String, ApiError> {
        self.opt_str(key)?
            .ok_or_else(|| ApiError::missing(&self.path(key)))
    }

    pub fn opt_bool(&self, key: &str) -> Result<Option<bool>, ApiError> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::Bool(b)) => Ok(Some(*b)),
            Some(_) => Err(self.wrong_type(key, "a boolean")),
        }
    }

    pub fn req_bool(&self, key: &str) -> Result<bool, ApiError> {
        self.opt_bool(key)?
            .ok_or_else(|| ApiError::missing(&self.path(key)))
    }

    pub fn opt_int(&self, key: &str) -> Result<Option<i64>, ApiError> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::Number(n)) => n
                .as_i64()
                .map(Some)
                .ok_or_else(|| self.wrong_type(key, "an integer")),
            Some(_) => Err(self.wrong_type(key, "an integer")),
        }
    }

    pub fn opt_obj(&self, key: &str) -> Result<Option<Body<'a>>, ApiError> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::Object(obj)) => Ok(Some(Body {
                obj,
                prefix: self.path(key),
            })),
            Some(_) => Err(self.wrong_type(key, "an object")),
        }
    }

    pub fn req_obj(&self, key: &str) -> Result<Body<'a>, ApiError> {
        self.opt_obj(key)?
            .ok_or_else(|| ApiError::missing(&self.path(key)))
    }

    /// A list member; items are handed back with their path (`PackageList.2`) for messages.
    pub fn opt_list(&self, key: &str) -> Result<Option<Vec<(String, &'a Value)>>, ApiError> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::Array(items)) => Ok(Some(
                items
                    .iter()
                    .enumerate()
                    .map(|(i, v)| (format!("{}.{}", self.path(key), i + 1), v))
                    .collect(),
            )),
            Some(_) => Err(self.wrong_type(key, "a list")),
        }
    }

    pub fn opt_str_list(&self, key: &str) -> Result<Option<Vec<(String, String)>>, ApiError> {
        let Some(items) = self.opt_list(key)? else {
            return Ok(None);
        };
        items
            .into_iter()
            .map(|(path, v)| match v {
                Value::String(s) => Ok((path, s.clone())),
                _ => Err(ApiError::Validation(format!(
                    "1 validation error detected: Value at '{path}' failed to satisfy constraint: Member must be a string"
                ))),
            })
            .collect::<Result<Vec<_>, _>>()
            .map(Some)
    }

    pub fn item(obj: &'a Map<String, Value>, path: String) -> Body<'a> {
        Body { obj, prefix: path }
    }
}

// ---- nested structures ----

fn package_source(body: &Body) -> Result<PackageSource, ApiError> {
    let source = body.req_obj("PackageSource")?;
    let bucket = source.req_str("S3BucketName")?;
    length(&source.path("S3BucketName"), &bucket, 3, 63)?;
    let key = source.req_str("S3Key")?;
    length(&source.path("S3Key"), &key, 1, 1024)?;
    Ok(PackageSource {
        s3_bucket_name: bucket,
        s3_key: key,
    })
}

fn package_configuration(body: &Body) -> Result<Option<PackageConfiguration>, ApiError> {
    let Some(conf) = body.opt_obj("PackageConfiguration")? else {
        return Ok(None);
    };
    let license_requirement = conf.req_str("LicenseRequirement")?;
    requirement_level(&conf.path("LicenseRequirement"), &license_requirement)?;
    let configuration_requirement = conf.req_str("ConfigurationRequirement")?;
    requirement_level(
        &conf.path("ConfigurationRequirement"),
        &configuration_requirement,
    )?;
    let filepath = conf.opt_str("LicenseFilepath")?;
    if let Some(path) = &filepath {
        license_filepath(&conf.path("LicenseFilepath"), path)?;
    }
    Ok(Some(PackageConfiguration {
        license_requirement,
        license_filepath: filepath,
        configuration_requirement,
        requires_restart_for_configuration_update: conf
            .opt_bool("RequiresRestartForConfigurationUpdate")?,
    }))
}

fn encryption_options(body: &Body) -> Result<Option<PackageEncryptionOptions>, ApiError> {
    let Some(enc) = body.opt_obj("PackageEncryptionOptions")? else {
        return Ok(None);
    };
    let encryption_enabled = enc.req_bool("EncryptionEnabled")?;
    let kms_key_identifier = enc.opt_str("KmsKeyIdentifier")?;
    if let Some(key) = &kms_key_identifier {
        length(&enc.path("KmsKeyIdentifier"), key, 1, 500)?;
    }
    Ok(Some(PackageEncryptionOptions {
        kms_key_identifier,
        encryption_enabled,
    }))
}

fn association_configuration(body: &Body) -> Result<Option<AssociationConfiguration>, ApiError> {
    let Some(conf) = body.opt_obj("AssociationConfiguration")? else {
        return Ok(None);
    };
    let key_store_access_option = match conf.opt_obj("KeyStoreAccessOption")? {
        None => None,
        Some(opt) => {
            let enabled = opt.req_bool("KeyStoreAccessEnabled")?;
            let arn = opt.opt_str("KeyAccessRoleArn")?;
            if let Some(arn) = &arn {
                key_access_role_arn(&opt.path("KeyAccessRoleArn"), arn)?;
            }
            Some(KeyStoreAccessOption {
                key_access_role_arn: arn,
                key_store_access_enabled: enabled,
            })
        }
    };
    Ok(Some(AssociationConfiguration {
        key_store_access_option,
    }))
}

fn description(body: &Body) -> Result<Option<String>, ApiError> {
    let description = body.opt_str("PackageDescription")?;
    if let Some(d) = &description {
        length("PackageDescription", d, 0, 1024)?;
    }
    Ok(description)
}

fn prerequisites(body: &Body) -> Result<Vec<String>, ApiError> {
    let ids = body
        .opt_str_list("PrerequisitePackageIDList")?
        .unwrap_or_default();
    ids.into_iter()
        .map(|(path, id)| package_id(&path, &id).map(|()| id))
        .collect()
}

// ---- per-operation inputs ----

pub fn create_package(body: &Body) -> Result<CreatePackageInput, ApiError> {
    let name = body.req_str("PackageName")?;
    package_name("PackageName", &name)?;
    let type_str = body.req_str("PackageType")?;
    let package_type = PackageType::parse(&type_str).ok_or_else(|| {
        ApiError::invalid(
            "PackageType",
            &type_str,
            "Member must satisfy enum value set: [TXT-DICTIONARY, ZIP-PLUGIN, PACKAGE-LICENSE, PACKAGE-CONFIG]",
        )
    })?;
    let source = package_source(body)?;
    let description = description(body)?;
    let engine = body.opt_str("EngineVersion")?;
    if let Some(v) = &engine {
        engine_version("EngineVersion", v)?;
    }
    match (package_type, &engine) {
        (PackageType::ZipPlugin, None) => {
            return Err(ApiError::Validation(
                "Operation not allowed. EngineVersion is a required parameter for this operation."
                    .to_string(),
            ));
        }
        (PackageType::ZipPlugin, Some(_)) | (_, None) => {}
        (other, Some(_)) => {
            return Err(ApiError::Validation(format!(
                "Operation not allowed. EngineVersion can only be specified for package type ZIP-PLUGIN, not {}.",
                other.as_str()
            )));
        }
    }
    let configuration = package_configuration(body)?;
    let vending = match body.opt_obj("PackageVendingOptions")? {
        None => None,
        Some(v) => Some(PackageVendingOptions {
            vending_enabled: v.req_bool("VendingEnabled")?,
        }),
    };
    let encryption = encryption_options(body)?;
    Ok(CreatePackageInput {
        name,
        package_type,
        description,
        source,
        engine_version: engine,
        configuration,
        vending,
        encryption,
    })
}

pub fn update_package(body: &Body) -> Result<UpdatePackageInput, ApiError> {
    let id = body.req_str("PackageID")?;
    package_id("PackageID", &id)?;
    let source = package_source(body)?;
    let description = description(body)?;
    let commit_message = body.opt_str("CommitMessage")?;
    if let Some(m) = &commit_message {
        length("CommitMessage", m, 0, 160)?;
    }
    Ok(UpdatePackageInput {
        package_id: id,
        source,
        description,
        commit_message,
        configuration: package_configuration(body)?,
        encryption: encryption_options(body)?,
    })
}

pub fn describe_packages(body: &Body) -> Result<DescribePackagesInput, ApiError> {
    let mut filters = Vec::new();
    for (path, item) in body.opt_list("Filters")?.unwrap_or_default() {
        let Value::Object(obj) = item else {
            return Err(ApiError::Validation(format!(
                "1 validation error detected: Value at '{path}' failed to satisfy constraint: Member must be an object"
            )));
        };
        let filter = Body::item(obj, path);
        let name_str = filter.req_str("Name")?;
        let name = FilterName::parse(&name_str).ok_or_else(|| {
            ApiError::invalid(
                &filter.path("Name"),
                &name_str,
                "Member must satisfy enum value set: [PackageID, PackageName, PackageStatus, PackageType, EngineVersion, PackageOwner]",
            )
        })?;
        let values = filter
            .opt_str_list("Value")?
            .ok_or_else(|| ApiError::missing(&filter.path("Value")))?;
        if values.is_empty() {
            return Err(ApiError::Validation(format!(
                "1 validation error detected: Value '[]' at '{}' failed to satisfy constraint: Member must have length greater than or equal to 1",
                filter.path("Value")
            )));
        }
        for (path, v) in &values {
            filter_value(path, v)?;
        }
        filters.push(Filter {
            name,
            values: values.into_iter().map(|(_, v)| v).collect(),
        });
    }
    let max_results = match body.opt_int("MaxResults")? {
        None => None,
        Some(n) => Some(max_results("MaxResults", n)?),
    };
    Ok(DescribePackagesInput {
        filters,
        page: Page {
            max_results,
            next_token: body.opt_str("NextToken")?,
        },
    })
}

/// Paging of the GET operations: `maxResults` / `nextToken` in the query string.
pub fn query_page(query: &[(String, String)]) -> Result<Page, ApiError> {
    let mut page = Page::default();
    for (k, v) in query {
        match k.as_str() {
            "maxResults" => {
                let n: i64 = v
                    .parse()
                    .map_err(|_| ApiError::invalid("maxResults", v, "Member must be an integer"))?;
                page.max_results = Some(max_results("maxResults", n)?);
            }
            "nextToken" => page.next_token = Some(v.clone()),
            _ => {}
        }
    }
    Ok(page)
}

pub fn associate_package(body: &Body) -> Result<PackageForAssociation, ApiError> {
    Ok(PackageForAssociation {
        package_id: String::new(),
        prerequisites: prerequisites(body)?,
        configuration: association_configuration(body)?,
    })
}

pub fn associate_packages(body: &Body) -> Result<AssociatePackagesInput, ApiError> {
    let items = body
        .opt_list("PackageList")?
        .ok_or_else(|| ApiError::missing("PackageList"))?;
    let domain = body.req_str("DomainName")?;
    domain_name("DomainName", &domain)?;
    let mut packages = Vec::new();
    for (path, item) in items {
        let Value::Object(obj) = item else {
            return Err(ApiError::Validation(format!(
                "1 validation error detected: Value at '{path}' failed to satisfy constraint: Member must be an object"
            )));
        };
        let entry = Body::item(obj, path);
        let id = entry.req_str("PackageID")?;
        package_id(&entry.path("PackageID"), &id)?;
        packages.push(PackageForAssociation {
            package_id: id,
            prerequisites: prerequisites(&entry)?,
            configuration: association_configuration(&entry)?,
        });
    }
    if packages.is_empty() {
        return Err(ApiError::Validation(
            "1 validation error detected: Value '[]' at 'PackageList' failed to satisfy constraint: Member must have length greater than or equal to 1".to_string(),
        ));
    }
    Ok(AssociatePackagesInput {
        domain_name: domain,
        packages,
    })
}

pub fn dissociate_packages(body: &Body) -> Result<DissociatePackagesInput, ApiError> {
    let ids = body
        .opt_str_list("PackageList")?
        .ok_or_else(|| ApiError::missing("PackageList"))?;
    let domain = body.req_str("DomainName")?;
    domain_name("DomainName", &domain)?;
    if ids.is_empty() {
        return Err(ApiError::Validation(
            "1 validation error detected: Value '[]' at 'PackageList' failed to satisfy constraint: Member must have length greater than or equal to 1".to_string(),
        ));
    }
    let package_ids = ids
        .into_iter()
        .map(|(path, id)| package_id(&path, &id).map(|()| id))
        .collect::<Result<_, _>>()?;
    Ok(DissociatePackagesInput {
        domain_name: domain,
        package_ids,
    })
}

pub fn update_package_scope(body: &Body) -> Result<UpdatePackageScopeInput, ApiError> {
    let id = body.req_str("PackageID")?;
    package_id("PackageID", &id)?;
    let op = body.req_str("Operation")?;
    let operation = match op.as_str() {
        "ADD" => ScopeOperation::Add,
        "OVERRIDE" => ScopeOperation::Override,
        "REMOVE" => ScopeOperation::Remove,
        _ => {
            return Err(ApiError::invalid(
                "Operation",
                &op,
                "Member must satisfy enum value set: [ADD, OVERRIDE, REMOVE]",
            ));
        }
    };
    let users = body
        .opt_str_list("PackageUserList")?
        .ok_or_else(|| ApiError::missing("PackageUserList"))?;
    for (path, user) in &users {
        package_user(path, user)?;
    }
    Ok(UpdatePackageScopeInput {
        package_id: id,
        operation,
        users: users.into_iter().map(|(_, u)| u).collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_match_the_model() {
        assert!(package_id("PackageID", "F123").is_ok());
        assert!(package_id("PackageID", "G1").is_ok());
        assert!(package_id("PackageID", "pkg-0af").is_ok());
        for bad in ["F", "f1", "X1", "pkg-", "pkg-xyz", "F12a", ""] {
            assert!(package_id("PackageID", bad).is_err(), "{bad}");
        }
        assert!(engine_version("EngineVersion", "OpenSearch_2.15").is_ok());
        assert!(engine_version("EngineVersion", "Elasticsearch_7.10").is_ok());
        for bad in [
            "OpenSearch_2",
            "Elasticsearch_10.1",
            "OpenSearch_2.155",
            "Solr_1.0",
        ] {
            assert!(engine_version("EngineVersion", bad).is_err(), "{bad}");
        }
        assert!(package_name("PackageName", "my-synonyms").is_ok());
        for bad in ["ab", "My-pkg", "1abc", "ab_c"] {
            assert!(package_name("PackageName", bad).is_err(), "{bad}");
        }
        assert!(license_filepath("LicenseFilepath", "licenses/a.txt").is_ok());
        for bad in ["../a", "a/../b", "/abs", "a//b", "a b"] {
            assert!(license_filepath("LicenseFilepath", bad).is_err(), "{bad}");
        }
        assert!(
            key_access_role_arn("KeyAccessRoleArn", "arn:aws:iam::123456789012:role/x").is_ok()
        );
        assert!(
            key_access_role_arn("KeyAccessRoleArn", "arn:aws:iam::12:user/xxxxxxxxxx").is_err()
        );
        assert!(package_user("PackageUserList.1", "GLOBAL").is_ok());
        assert!(package_user("PackageUserList.1", "12345678901").is_err());
    }

    #[test]
    fn messages_name_the_member() {
        let json = parse_json(br#"{"PackageName":"ok-name","PackageType":"TXT-DICTIONARY","PackageSource":{"S3BucketName":"bk","S3Key":"k"}}"#).unwrap();
        let err = create_package(&Body::new(&json)).unwrap_err();
        assert!(
            err.to_string().contains("PackageSource.S3BucketName"),
            "{err}"
        );
    }
}
