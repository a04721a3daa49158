//! The names STS hands out and reads: role and assumed-role ARNs, the accounts key ids stand
//! for, IAM-style unique ids, key suffixes, secrets and tokens, and `Expiration` times.

use md5::{Digest, Md5};

use super::SESSION_KEY_PREFIX;

/// The account and name of a well-formed role ARN.
pub(super) struct RoleArn<'a> {
    pub(super) account: &'a str,
    pub(super) name: &'a str,
}

pub(super) fn is_account(text: &str) -> bool {
    text.len() == 12 && text.bytes().all(|b| b.is_ascii_digit())
}

/// `arn:aws:iam::<12 digits>:role/[path/]<name>`, names and paths of `[\w+=,.@-]`.
pub(super) fn parse_role_arn(arn: &str) -> Option<RoleArn<'_>> {
    let rest = arn.strip_prefix("arn:aws:iam::")?;
    let (account, rest) = rest.split_once(':')?;
    let path_and_name = rest.strip_prefix("role/")?;
    let name = path_and_name.rsplit('/').next()?;
    let allowed = |b: u8| b.is_ascii_alphanumeric() || b"_+=,.@-/".contains(&b);
    (is_account(account)
        && !name.is_empty()
        && name.len() <= 64
        && path_and_name.bytes().all(allowed))
    .then_some(RoleArn { account, name })
}

/// The account an access key id stands for: a 12-digit key is that account, a key the
/// simulator's STS issued (`ASIA` + account + suffix) the role's account, others none.
pub fn account_of_key(access_key_id: &str) -> Option<&str> {
    if is_account(access_key_id) {
        return Some(access_key_id);
    }
    let digits = access_key_id
        .strip_prefix(SESSION_KEY_PREFIX)?
        .get(..12)
        .filter(|d| is_account(d))?;
    Some(digits)
}

pub(super) fn assumed_role_arn(role_arn: &str, session_name: &str) -> String {
    match parse_role_arn(role_arn) {
        Some(role) => format!(
            "arn:aws:sts::{}:assumed-role/{}/{session_name}",
            role.account, role.name
        ),
        None => format!("arn:aws:sts::000000000000:assumed-role/unknown/{session_name}"),
    }
}

/// IAM-style unique ids (`AROA…` for roles, `AIDA…` for users): 4 + 17 characters, stable
/// for the same ARN or key.
pub(super) fn unique_id(prefix: &str, of: &str) -> String {
    let digest = Md5::digest(of.as_bytes());
    let mut bits = u128::from_be_bytes(digest.into());
    let mut id = prefix.to_string();
    for _ in 0..17 {
        id.push(char::from(BASE32[(bits & 31) as usize]));
        bits >>= 5;
    }
    id
}

pub(super) const BASE32: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
pub(super) const SECRET_ALPHABET: &[u8] =
    b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
pub(super) const TOKEN_ALPHABET: &[u8] =
    b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// `n` in base32 (most significant first), zero-padded to at least `width` characters.
pub(super) fn base32(mut n: u64, width: usize) -> String {
    let mut digits = Vec::new();
    while n > 0 || digits.len() < width {
        digits.push(BASE32[(n % 32) as usize]);
        n /= 32;
    }
    digits.iter().rev().map(|&b| char::from(b)).collect()
}

pub(super) fn random_text(len: usize, alphabet: &[u8]) -> String {
    (0..len)
        .map(|_| char::from(alphabet[rand::random_range(0..alphabet.len())]))
        .collect()
}

/// `2026-01-02T03:04:05Z`, as STS writes `Expiration`.
pub(super) fn iso8601(epoch_ms: u64) -> String {
    let secs = epoch_ms / 1000;
    let (year, month, day) = crate::s3::civil_from_days(secs / 86_400);
    let (hour, minute, second) = ((secs % 86_400) / 3600, (secs % 3600) / 60, secs % 60);
    format!("{year:04}-{month:02}-{day:02}T{hour:02}:{minute:02}:{second:02}Z")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn role_arns() {
        let arn = parse_role_arn("arn:aws:iam::111122223333:role/team/a/deployer").unwrap();
        assert_eq!((arn.account, arn.name), ("111122223333", "deployer"));
        for bad in [
            "arn:aws:iam::11112222333:role/x",
            "arn:aws:iam::111122223333:user/x",
            "arn:aws:iam::111122223333:role/",
            "arn:aws:iam::111122223333:role/a b",
            "arn:aws:s3:::111122223333:role/x",
        ] {
            assert!(parse_role_arn(bad).is_none(), "{bad}");
        }
        assert_eq!(
            assumed_role_arn("arn:aws:iam::111122223333:role/team/deployer", "s1"),
            "arn:aws:sts::111122223333:assumed-role/deployer/s1"
        );
    }

    #[test]
    fn keys_name_accounts() {
        assert_eq!(account_of_key("111122223333"), Some("111122223333"));
        assert_eq!(account_of_key("ASIA111122223333AAAB"), Some("111122223333"));
        assert_eq!(account_of_key("ASIAXYZ"), None);
        assert_eq!(account_of_key("test"), None);
        assert_eq!(base32(0, 4), "AAAA");
        assert_eq!(base32(33, 4), "AABB");
        assert_eq!(base32(32u64.pow(4), 4), "BAAAA");
    }

    #[test]
    fn dates_and_ids() {
        assert_eq!(iso8601(0), "1970-01-01T00:00:00Z");
        assert_eq!(iso8601(1_767_323_045_999), "2026-01-02T03:04:05Z");
        let id = unique_id("AROA", "x");
        assert_eq!(id.len(), 21);
        assert_eq!(id, unique_id("AROA", "x"));
        assert_ne!(id, unique_id("AROA", "y"));
    }
}
