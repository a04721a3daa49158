//! Conversions between the operator's types and the SDK's: request members built from the
//! spec, packages and associations read from the service's answers.

use aws_sdk_opensearch::types as sdk;
use aws_smithy_types::error::operation::BuildError;
use jiff::Timestamp;

use crate::backend::{
    BackendError, BackendResult, DomainAssociation, DomainPackageStatus, Package, PackageStatus,
    ServiceError, Source,
};
use crate::crd::{KeyStoreAccess, PackageConfiguration, PackageEncryption};

pub(super) fn package_source(source: Source) -> sdk::PackageSource {
    sdk::PackageSource::builder()
        .s3_bucket_name(source.bucket)
        .s3_key(source.key)
        .build()
}

pub(super) fn configuration(
    conf: &PackageConfiguration,
) -> BackendResult<sdk::PackageConfiguration> {
    sdk::PackageConfiguration::builder()
        .license_requirement(sdk::RequirementLevel::from(
            conf.license_requirement.as_str(),
        ))
        .configuration_requirement(sdk::RequirementLevel::from(
            conf.configuration_requirement.as_str(),
        ))
        .set_license_filepath(conf.license_filepath.clone())
        .set_requires_restart_for_configuration_update(
            conf.requires_restart_for_configuration_update,
        )
        .build()
        .map_err(build_error)
}

pub(super) fn encryption(enc: &PackageEncryption) -> BackendResult<sdk::PackageEncryptionOptions> {
    sdk::PackageEncryptionOptions::builder()
        .encryption_enabled(enc.enabled)
        .set_kms_key_identifier(enc.kms_key_identifier.clone())
        .build()
        .map_err(build_error)
}

pub(super) fn vending(enabled: bool) -> BackendResult<sdk::PackageVendingOptions> {
    sdk::PackageVendingOptions::builder()
        .vending_enabled(enabled)
        .build()
        .map_err(build_error)
}

pub(super) fn key_store_access(
    access: &KeyStoreAccess,
) -> BackendResult<sdk::KeyStoreAccessOption> {
    sdk::KeyStoreAccessOption::builder()
        .key_store_access_enabled(access.enabled)
        .set_key_access_role_arn(access.key_access_role_arn.clone())
        .build()
        .map_err(build_error)
}

/// The nested builders only fail when a required member is unset, which the callers above
/// never do; should it happen, the request is wrong, not the weather.
fn build_error(err: BuildError) -> BackendError {
    BackendError::Invalid(err.to_string())
}

pub(super) fn missing(operation: &str, member: &str) -> BackendError {
    BackendError::Transient(format!("{operation} response has no {member}"))
}

/// The service sends epoch seconds as a JSON number with a fraction (`1.605225005466E9`); an
/// `f64` of that size cannot carry more than microseconds, so the noise below is dropped.
pub(super) fn timestamp(at: Option<&aws_smithy_types::DateTime>) -> Option<Timestamp> {
    let at = Timestamp::from_nanosecond(at?.as_nanos()).ok()?;
    at.round(jiff::Unit::Microsecond).ok()
}

fn service_error(details: Option<&sdk::ErrorDetails>) -> Option<ServiceError> {
    details.map(|d| ServiceError {
        error_type: d.error_type().map(str::to_owned),
        error_message: d.error_message().map(str::to_owned),
    })
}

pub(super) fn package_from_sdk(details: &sdk::PackageDetails) -> Package {
    Package {
        id: details.package_id().unwrap_or_default().to_owned(),
        name: details.package_name().unwrap_or_default().to_owned(),
        package_type: details
            .package_type()
            .map(|t| t.as_str().to_owned())
            .unwrap_or_default(),
        status: PackageStatus::from_service(
            details
                .package_status()
                .map(sdk::PackageStatus::as_str)
                .unwrap_or_default(),
        ),
        description: details.package_description().map(str::to_owned),
        available_version: details.available_package_version().map(str::to_owned),
        engine_version: details.engine_version().map(str::to_owned),
        error: service_error(details.error_details()),
        created_at: timestamp(details.created_at()),
        last_updated_at: timestamp(details.last_updated_at()),
        // The getter turns "absent" into an empty slice; the field keeps the difference
        // (the list is only shown to the owner).
        allow_listed_users: details.allow_listed_user_list.clone(),
    }
}

pub(super) fn association_from_sdk(details: &sdk::DomainPackageDetails) -> DomainAssociation {
    DomainAssociation {
        domain_name: details.domain_name().unwrap_or_default().to_owned(),
        package_id: details.package_id().unwrap_or_default().to_owned(),
        status: DomainPackageStatus::from_service(
            details
                .domain_package_status()
                .map(sdk::DomainPackageStatus::as_str)
                .unwrap_or_default(),
        ),
        package_version: details.package_version().map(str::to_owned),
        reference_path: details.reference_path().map(str::to_owned),
        last_updated: timestamp(details.last_updated()),
        error: service_error(details.error_details()),
    }
}
