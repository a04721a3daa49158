//! Constraints on single members (lengths, patterns, ranges), each refusal a
//! ValidationException naming the member as the request spelled it.

use crate::error::ApiError;

use super::MAX_RESULTS_LIMIT;

pub(super) fn length(field: &str, value: &str, min: usize, max: usize) -> Result<(), ApiError> {
    let n = value.chars().count();
    if n < min || n > max {
        return Err(ApiError::invalid(
            field,
            value,
            &format!("Member must have length between {min} and {max}, inclusive"),
        ));
    }
    Ok(())
}

/// `[a-z][a-z0-9\-]+`, matched against the whole value.
pub(super) fn lower_name(value: &str) -> bool {
    let mut chars = value.chars();
    matches!(chars.next(), Some('a'..='z'))
        && value.len() >= 2
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
}

pub fn package_name(field: &str, value: &str) -> Result<(), ApiError> {
    length(field, value, 3, 256)?;
    if !lower_name(value) {
        return Err(ApiError::invalid(
            field,
            value,
            "Member must satisfy regular expression pattern: [a-z][a-z0-9\\-]+",
        ));
    }
    Ok(())
}

pub fn domain_name(field: &str, value: &str) -> Result<(), ApiError> {
    length(field, value, 3, 28)?;
    if !lower_name(value) {
        return Err(ApiError::invalid(
            field,
            value,
            "Member must satisfy regular expression pattern: [a-z][a-z0-9\\-]+",
        ));
    }
    Ok(())
}

/// `^([FG][0-9]+)$|^(pkg-[a-f0-9]+)$`
pub fn package_id(field: &str, value: &str) -> Result<(), ApiError> {
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    let ok = if let Some(rest) = value.strip_prefix("pkg-") {
        !rest.is_empty()
            && rest
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    } else if let Some(rest) = value.strip_prefix(['F', 'G']) {
        digits(rest)
    } else {
        false
    };
    if !ok {
        return Err(ApiError::invalid(
            field,
            value,
            "Member must satisfy regular expression pattern: ^([FG][0-9]+)$|^(pkg-[a-f0-9]+)$",
        ));
    }
    Ok(())
}

/// `^Elasticsearch_[0-9]{1}\.[0-9]{1,2}$|^OpenSearch_[0-9]{1,2}\.[0-9]{1,2}$`
pub fn engine_version(field: &str, value: &str) -> Result<(), ApiError> {
    let version = |s: &str, major_max: usize| {
        let Some((major, minor)) = s.split_once('.') else {
            return false;
        };
        let digits = |p: &str, max: usize| {
            (1..=max).contains(&p.len()) && p.bytes().all(|b| b.is_ascii_digit())
        };
        digits(major, major_max) && digits(minor, 2)
    };
    let ok = if let Some(v) = value.strip_prefix("Elasticsearch_") {
        version(v, 1)
    } else if let Some(v) = value.strip_prefix("OpenSearch_") {
        version(v, 2)
    } else {
        false
    };
    if !ok {
        return Err(ApiError::invalid(
            field,
            value,
            "Member must satisfy regular expression pattern: ^Elasticsearch_[0-9]{1}\\.[0-9]{1,2}$|^OpenSearch_[0-9]{1,2}\\.[0-9]{1,2}$",
        ));
    }
    Ok(())
}

/// A relative path of `[a-zA-Z0-9_.-]+` segments with no `..` anywhere.
pub(super) fn license_filepath(field: &str, value: &str) -> Result<(), ApiError> {
    length(field, value, 0, 256)?;
    let segment_ok = |s: &str| {
        !s.is_empty()
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'.' || b == b'-')
    };
    if value.contains("..") || !value.split('/').all(segment_ok) {
        return Err(ApiError::invalid(
            field,
            value,
            "Member must satisfy regular expression pattern: ^(?!.*\\/\\.{2,})(?!.*\\.\\.)[a-zA-Z0-9_.-]+(?:\\/[a-zA-Z0-9_.-]+)*$",
        ));
    }
    Ok(())
}

pub(super) fn key_access_role_arn(field: &str, value: &str) -> Result<(), ApiError> {
    length(field, value, 20, 2048)?;
    let ok = ["aws", "aws-cn", "aws-us-gov", "aws-iso", "aws-iso-b"]
        .iter()
        .any(|partition| {
            value
                .strip_prefix(&format!("arn:{partition}:iam::"))
                .and_then(|rest| rest.split_once(":role/"))
                .is_some_and(|(account, _)| {
                    !account.is_empty() && account.bytes().all(|b| b.is_ascii_digit())
                })
        });
    if !ok {
        return Err(ApiError::invalid(
            field,
            value,
            "Member must satisfy regular expression pattern: arn:(aws|aws-cn|aws-us-gov|aws-iso|aws-iso-b):iam::[0-9]+:role\\/.*",
        ));
    }
    Ok(())
}

pub(super) fn requirement_level(field: &str, value: &str) -> Result<(), ApiError> {
    if !matches!(value, "REQUIRED" | "OPTIONAL" | "NONE") {
        return Err(ApiError::invalid(
            field,
            value,
            "Member must satisfy enum value set: [REQUIRED, OPTIONAL, NONE]",
        ));
    }
    Ok(())
}

/// `^[0-9a-zA-Z\*\.\_\\\/\?-]+$`
pub(super) fn filter_value(field: &str, value: &str) -> Result<(), ApiError> {
    let ok = !value.is_empty()
        && value.bytes().all(|b| {
            b.is_ascii_alphanumeric()
                || matches!(b, b'*' | b'.' | b'_' | b'\\' | b'/' | b'?' | b'-')
        });
    if !ok {
        return Err(ApiError::invalid(
            field,
            value,
            "Member must satisfy regular expression pattern: ^[0-9a-zA-Z\\*\\.\\_\\\\\\/\\?-]+$",
        ));
    }
    Ok(())
}

/// `^[0-9]{12}$|^GLOBAL$`, length 6–12.
pub(super) fn package_user(field: &str, value: &str) -> Result<(), ApiError> {
    length(field, value, 6, 12)?;
    let ok = value == "GLOBAL" || (value.len() == 12 && value.bytes().all(|b| b.is_ascii_digit()));
    if !ok {
        return Err(ApiError::invalid(
            field,
            value,
            "Member must satisfy regular expression pattern: ^[0-9]{12}$|^GLOBAL$",
        ));
    }
    Ok(())
}

pub fn max_results(field: &str, value: i64) -> Result<usize, ApiError> {
    if !(1..=MAX_RESULTS_LIMIT).contains(&value) {
        return Err(ApiError::invalid(
            field,
            &value.to_string(),
            "Member must have value between 1 and 100, inclusive",
        ));
    }
    Ok(value as usize)
}
