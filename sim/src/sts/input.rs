//! AssumeRole's input: its form parameters validated as STS validates them (in the order of
//! the model's members, with STS's messages), and the `PackedPolicySize` the answer reports.

use std::collections::BTreeMap;

use axum::http::StatusCode;

use super::names::parse_role_arn;
use super::query::StsError;
use super::{MAX_DURATION, MIN_DURATION};

/// A validated AssumeRole request.
#[derive(Debug, Clone)]
pub(super) struct AssumeRoleInput {
    pub(super) role_arn: String,
    pub(super) session_name: String,
    pub(super) external_id: Option<String>,
    pub(super) duration: Option<u64>,
    pub(super) tags: Vec<(String, String)>,
    pub(super) policy: Option<String>,
}

pub(super) fn check_external_id(id: &str) -> Result<(), StsError> {
    let len = id.chars().count();
    if len < 2 {
        return Err(StsError::invalid(
            "externalId",
            id,
            "Member must have length greater than or equal to 2",
        ));
    }
    if len > 1224 {
        return Err(StsError::invalid(
            "externalId",
            id,
            "Member must have length less than or equal to 1224",
        ));
    }
    let allowed = |c: char| c.is_ascii_alphanumeric() || "_+=,.@:/-".contains(c);
    if !id.chars().all(allowed) {
        return Err(StsError::invalid(
            "externalId",
            id,
            "Member must satisfy regular expression pattern: [\\w+=,.@:\\/-]*",
        ));
    }
    Ok(())
}

/// Parameters of an AssumeRole request, validated in the order of the model's members.
pub(super) fn assume_role_input(params: &[(String, String)]) -> Result<AssumeRoleInput, StsError> {
    let param = |name: &str| {
        params
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
    };
    let role_arn = param("RoleArn").ok_or_else(|| StsError::missing("roleArn"))?;
    if role_arn.chars().count() < 20 {
        return Err(StsError::invalid(
            "roleArn",
            &role_arn,
            "Member must have length greater than or equal to 20",
        ));
    }
    if role_arn.chars().count() > 2048 {
        return Err(StsError::invalid(
            "roleArn",
            &role_arn,
            "Member must have length less than or equal to 2048",
        ));
    }
    let session_name =
        param("RoleSessionName").ok_or_else(|| StsError::missing("roleSessionName"))?;
    let len = session_name.chars().count();
    if len < 2 {
        return Err(StsError::invalid(
            "roleSessionName",
            &session_name,
            "Member must have length greater than or equal to 2",
        ));
    }
    if len > 64 {
        return Err(StsError::invalid(
            "roleSessionName",
            &session_name,
            "Member must have length less than or equal to 64",
        ));
    }
    let allowed = |c: char| c.is_ascii_alphanumeric() || "_+=,.@-".contains(c);
    if !session_name.chars().all(allowed) {
        return Err(StsError::invalid(
            "roleSessionName",
            &session_name,
            "Member must satisfy regular expression pattern: [\\w+=,.@-]*",
        ));
    }
    let duration = match param("DurationSeconds") {
        None => None,
        Some(text) => {
            let seconds: u64 = text.parse().map_err(|_| {
                StsError::validation(format!(
                    "1 validation error detected: Value '{text}' at 'durationSeconds' failed to satisfy constraint: Member must be a number"
                ))
            })?;
            if seconds < MIN_DURATION {
                return Err(StsError::invalid(
                    "durationSeconds",
                    &text,
                    "Member must have value greater than or equal to 900",
                ));
            }
            if seconds > MAX_DURATION {
                return Err(StsError::invalid(
                    "durationSeconds",
                    &text,
                    "Member must have value less than or equal to 43200",
                ));
            }
            Some(seconds)
        }
    };
    let external_id = param("ExternalId");
    if let Some(id) = &external_id {
        check_external_id(id)?;
    }
    let tags = session_tags(params)?;
    let policy = param("Policy");
    if let Some(policy) = &policy
        && !serde_json::from_str::<serde_json::Value>(policy).is_ok_and(|v| v.is_object())
    {
        return Err(StsError::new(
            StatusCode::BAD_REQUEST,
            "MalformedPolicyDocument",
            "The policy is not in the valid JSON format.",
        ));
    }
    // Only now the ARN's form: the model's length checks come first.
    if parse_role_arn(&role_arn).is_none() {
        return Err(StsError::validation(format!("{role_arn} is invalid")));
    }
    Ok(AssumeRoleInput {
        role_arn,
        session_name,
        external_id,
        duration,
        tags,
        policy,
    })
}

/// `Tags.member.N.Key` / `Tags.member.N.Value`, in the order of N.
fn session_tags(params: &[(String, String)]) -> Result<Vec<(String, String)>, StsError> {
    let mut members: BTreeMap<u32, (Option<String>, Option<String>)> = BTreeMap::new();
    for (name, value) in params {
        let Some(rest) = name.strip_prefix("Tags.member.") else {
            continue;
        };
        let Some((n, field)) = rest.split_once('.') else {
            continue;
        };
        let Ok(n) = n.parse::<u32>() else { continue };
        let member = members.entry(n).or_default();
        match field {
            "Key" => member.0 = Some(value.clone()),
            "Value" => member.1 = Some(value.clone()),
            _ => {}
        }
    }
    if members.len() > 50 {
        return Err(StsError::validation(
            "1 validation error detected: Value at 'tags' failed to satisfy constraint: Member must have length less than or equal to 50",
        ));
    }
    let mut tags = Vec::new();
    for (i, (key, value)) in members.into_values().enumerate() {
        let at = |field: &str| format!("tags.{}.member.{field}", i + 1);
        let key = key.ok_or_else(|| StsError::missing(&at("key")))?;
        let value = value.ok_or_else(|| StsError::missing(&at("value")))?;
        let key_len = key.chars().count();
        if key_len < 1 {
            return Err(StsError::invalid(
                &at("key"),
                &key,
                "Member must have length greater than or equal to 1",
            ));
        }
        if key_len > 128 {
            return Err(StsError::invalid(
                &at("key"),
                &key,
                "Member must have length less than or equal to 128",
            ));
        }
        if value.chars().count() > 256 {
            return Err(StsError::invalid(
                &at("value"),
                &value,
                "Member must have length less than or equal to 256",
            ));
        }
        let allowed = |c: char| c.is_alphanumeric() || c.is_whitespace() || "_.:/=+-@".contains(c);
        if !key.chars().all(allowed) {
            return Err(StsError::invalid(
                &at("key"),
                &key,
                "Member must satisfy regular expression pattern: [\\p{L}\\p{Z}\\p{N}_.:/=+\\-@]+",
            ));
        }
        if !value.chars().all(allowed) {
            return Err(StsError::invalid(
                &at("value"),
                &value,
                "Member must satisfy regular expression pattern: [\\p{L}\\p{Z}\\p{N}_.:/=+\\-@]*",
            ));
        }
        if tags
            .iter()
            .any(|(k, _): &(String, String)| k.eq_ignore_ascii_case(&key))
        {
            return Err(StsError::validation(
                "Duplicate tag keys found. Please note that Tag keys are case insensitive.",
            ));
        }
        tags.push((key, value));
    }
    Ok(tags)
}

/// `PackedPolicySize`: only when the request passed a session policy or tags. AWS's packing
/// is undocumented; this is the percentage of 4096 bytes the policy and tags take.
pub(super) fn packed_policy_size(input: &AssumeRoleInput) -> Option<u64> {
    if input.policy.is_none() && input.tags.is_empty() {
        return None;
    }
    let bytes = input.policy.as_ref().map_or(0, String::len)
        + input
            .tags
            .iter()
            .map(|(k, v)| k.len() + v.len())
            .sum::<usize>();
    Some((bytes as u64 * 100).div_ceil(4096).max(1))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn assume_role_validation() {
        let arn = ("RoleArn", "arn:aws:iam::111122223333:role/r");
        let ok = assume_role_input(&pairs(&[
            arn,
            ("RoleSessionName", "s@x.y"),
            ("Tags.member.2.Key", "b"),
            ("Tags.member.2.Value", "2"),
            ("Tags.member.1.Key", "a"),
            ("Tags.member.1.Value", ""),
        ]))
        .unwrap();
        assert_eq!(ok.tags, [("a".into(), "".into()), ("b".into(), "2".into())]);
        let message = |list: &[(&str, &str)]| assume_role_input(&pairs(list)).unwrap_err().message;
        assert!(message(&[arn]).contains("Value null at 'roleSessionName'"));
        assert!(message(&[arn, ("RoleSessionName", "a b")]).contains("regular expression"));
        assert!(message(&[arn, ("RoleSessionName", "a")]).contains("greater than or equal to 2"));
        let long = "s".repeat(65);
        assert!(message(&[arn, ("RoleSessionName", &long)]).contains("less than or equal to 64"));
        let with = |extra: (&'static str, &'static str)| {
            assume_role_input(&pairs(&[arn, ("RoleSessionName", "ok"), extra]))
                .unwrap_err()
                .message
        };
        assert!(with(("DurationSeconds", "899")).contains("'durationSeconds'"));
        assert!(with(("DurationSeconds", "43201")).contains("less than or equal to 43200"));
        assert!(with(("ExternalId", "x")).contains("'externalId'"));
        assert!(with(("Tags.member.1.Key", "k")).contains("Value null at 'tags.1.member.value'"));
        assert_eq!(
            assume_role_input(&pairs(&[
                ("RoleArn", "arn:aws:iam::1:role/some-role"),
                ("RoleSessionName", "ok")
            ]))
            .unwrap_err()
            .message,
            "arn:aws:iam::1:role/some-role is invalid"
        );
        let mut many = pairs(&[arn, ("RoleSessionName", "ok")]);
        for i in 1..=51 {
            many.push((format!("Tags.member.{i}.Key"), format!("k{i}")));
            many.push((format!("Tags.member.{i}.Value"), "v".into()));
        }
        assert!(
            assume_role_input(&many)
                .unwrap_err()
                .message
                .contains("less than or equal to 50")
        );
    }
}
