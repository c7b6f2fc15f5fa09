//! Constraint checks from the service models. Each failure names the member and the rule it
//! broke, which the API layer turns into a 400 BadRequestException with that message.

/// A member that breaks its model's constraint; `Display` is the message the caller sees.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Violation {
    #[error("{member} must be between {min} and {max} characters long, but is {len}")]
    Length {
        member: String,
        min: usize,
        max: usize,
        len: usize,
    },
    #[error("{member} must have between {min} and {max} items, but has {len}")]
    Count {
        member: String,
        min: usize,
        max: usize,
        len: usize,
    },
    #[error("{member} must be between {min} and {max}, but is {value}")]
    Range {
        member: String,
        min: i64,
        max: i64,
        value: i64,
    },
    #[error("{member} must be one of [{allowed}], but is '{value}'")]
    NotOneOf {
        member: String,
        allowed: String,
        value: String,
    },
    #[error("{member} must match the pattern {pattern}, but contains {bad:?}")]
    Character {
        member: String,
        pattern: &'static str,
        bad: char,
    },
    #[error("{member} must match the pattern {pattern}")]
    Pattern {
        member: String,
        pattern: &'static str,
    },
    #[error(
        "{member} must be a GUID matching [a-fA-F0-9]{{8}}(?:-[a-fA-F0-9]{{4}}){{3}}-[a-fA-F0-9]{{12}}, but is '{value}'"
    )]
    Guid { member: String, value: String },
    #[error("{member} must not begin with 'aws:', which is reserved")]
    ReservedPrefix { member: String },
    #[error("{member} must not repeat a character four or more times in a row")]
    Repeats { member: String },
}

fn char_len(s: &str) -> usize {
    s.chars().count()
}

pub fn length(member: &str, value: &str, min: usize, max: usize) -> Result<(), Violation> {
    let len = char_len(value);
    if len < min || len > max {
        return Err(Violation::Length {
            member: member.to_string(),
            min,
            max,
            len,
        });
    }
    Ok(())
}

pub fn count(member: &str, len: usize, min: usize, max: usize) -> Result<(), Violation> {
    if len < min || len > max {
        return Err(Violation::Count {
            member: member.to_string(),
            min,
            max,
            len,
        });
    }
    Ok(())
}

pub fn range(member: &str, value: i64, min: i64, max: i64) -> Result<(), Violation> {
    if value < min || value > max {
        return Err(Violation::Range {
            member: member.to_string(),
            min,
            max,
            value,
        });
    }
    Ok(())
}

pub fn one_of(member: &str, value: &str, allowed: &[&str]) -> Result<(), Violation> {
    if allowed.contains(&value) {
        return Ok(());
    }
    Err(Violation::NotOneOf {
        member: member.to_string(),
        allowed: allowed.join(", "),
        value: value.to_string(),
    })
}

/// Whether `value` begins with the reserved `aws:` prefix, in any case. Compared on bytes, so a
/// multibyte character near the start (`José`, `«Ana»`) is simply not a match.
fn has_reserved_prefix(value: &str) -> bool {
    value
        .as_bytes()
        .get(..4)
        .is_some_and(|prefix| prefix.eq_ignore_ascii_case(b"aws:"))
}

fn all_chars(
    member: &str,
    value: &str,
    pattern: &'static str,
    ok: impl Fn(char) -> bool,
) -> Result<(), Violation> {
    match value.chars().find(|c| !ok(*c)) {
        None => Ok(()),
        Some(bad) => Err(Violation::Character {
            member: member.to_string(),
            pattern,
            bad,
        }),
    }
}

pub fn guid(member: &str, value: &str) -> Result<(), Violation> {
    if super::ids::is_guid(value) {
        return Ok(());
    }
    Err(Violation::Guid {
        member: member.to_string(),
        value: value.to_string(),
    })
}

/// `ClientRequestToken`: len 2..64, `[-_a-zA-Z0-9]*`. Deliberately not a UUID check: the Rust
/// SDK's automatic tokens are UUID-shaped but not RFC 4122.
pub fn client_request_token(value: &str) -> Result<(), Violation> {
    length("ClientRequestToken", value, 2, 64)?;
    all_chars("ClientRequestToken", value, "[-_a-zA-Z0-9]*", |c| {
        c.is_ascii_alphanumeric() || c == '-' || c == '_'
    })
}

/// `ExternalUserId`, `ExternalMeetingId` and `MeetingHostId`: len 2..64, the documented pattern
/// `[-_&@+=,(){}\[\]\/«».:|'"#a-zA-Z0-9À-ÿ\s]*`, and the reserved `aws:` prefix.
pub fn external_id(member: &str, value: &str) -> Result<(), Violation> {
    length(member, value, 2, 64)?;
    all_chars(
        member,
        value,
        "[-_&@+=,(){}\\[\\]\\/«».:|'\"#a-zA-Z0-9À-ÿ\\s]*",
        |c| {
            c.is_ascii_alphanumeric()
                || c.is_whitespace()
                || ('\u{C0}'..='\u{FF}').contains(&c)
                || "-_&@+=,(){}[]/«».:|'\"#".contains(c)
        },
    )?;
    if has_reserved_prefix(value) {
        return Err(Violation::ReservedPrefix {
            member: member.to_string(),
        });
    }
    Ok(())
}

/// sdk-meetings `TagKey`: len 1..128, `^[a-zA-Z+-=._:/]+$`. In that class `+-=` is a range
/// (U+002B..U+003D), which takes in `+,-./0-9:;<=`.
pub fn tag_key(member: &str, value: &str) -> Result<(), Violation> {
    length(member, value, 1, 128)?;
    all_chars(member, value, "^[a-zA-Z+-=._:/]+$", |c| {
        c.is_ascii_alphabetic() || ('+'..='=').contains(&c) || "._:/".contains(c)
    })?;
    if has_reserved_prefix(value) {
        return Err(Violation::ReservedPrefix {
            member: member.to_string(),
        });
    }
    Ok(())
}

/// sdk-meetings `TagValue`: len 0..256, `[\s\w+-=\.:/@]*` (again `+-=` is a range).
pub fn tag_value(member: &str, value: &str) -> Result<(), Violation> {
    length(member, value, 0, 256)?;
    all_chars(member, value, "[\\s\\w+-=\\.:/@]*", |c| {
        c.is_whitespace()
            || c.is_alphanumeric()
            || c == '_'
            || ('+'..='=').contains(&c)
            || ".:/@".contains(c)
    })
}

/// `TenantId`: len 2..256, `^(?!.*?(.)\1{3})[-_!@#$a-zA-Z0-9]*$`: the characters of the class,
/// and no character four or more times in a row. Checked by hand: `regex` has no look-around.
pub fn tenant_id(member: &str, value: &str) -> Result<(), Violation> {
    length(member, value, 2, 256)?;
    all_chars(member, value, "[-_!@#$a-zA-Z0-9]*", |c| {
        c.is_ascii_alphanumeric() || "-_!@#$".contains(c)
    })?;
    let chars: Vec<char> = value.chars().collect();
    if chars
        .windows(4)
        .any(|w| w.first().is_some_and(|first| w.iter().all(|c| c == first)))
    {
        return Err(Violation::Repeats {
            member: member.to_string(),
        });
    }
    Ok(())
}

/// sdk-meetings `AmazonResourceName`: len 1..1011, `^arn:.*`.
pub fn amazon_resource_name(member: &str, value: &str) -> Result<(), Violation> {
    length(member, value, 1, 1011)?;
    if !value.starts_with("arn:") {
        return Err(Violation::Pattern {
            member: member.to_string(),
            pattern: "^arn:.*",
        });
    }
    Ok(())
}

/// `Arn` (notification targets, and the legacy tag operations' ResourceARN): len 1..1024,
/// `^arn[\/\:\-\_\.a-zA-Z0-9]+$`.
pub fn arn(member: &str, value: &str) -> Result<(), Violation> {
    length(member, value, 1, 1024)?;
    let rest = value.strip_prefix("arn").unwrap_or("");
    if rest.is_empty()
        || !rest
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "/:-_.".contains(c))
    {
        return Err(Violation::Pattern {
            member: member.to_string(),
            pattern: "^arn[\\/\\:\\-\\_\\.a-zA-Z0-9]+$",
        });
    }
    Ok(())
}

/// Free-text members with an `^[...]+`-style prefix pattern in the transcription settings.
pub fn prefix_class(
    member: &str,
    value: &str,
    pattern: &'static str,
    ok: impl Fn(char) -> bool,
) -> Result<(), Violation> {
    match value.chars().next() {
        Some(c) if ok(c) => Ok(()),
        _ => Err(Violation::Pattern {
            member: member.to_string(),
            pattern,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lengths_count_characters() {
        assert!(length("X", "ab", 2, 64).is_ok());
        assert!(length("X", "a", 2, 64).is_err());
        assert!(length("X", &"ü".repeat(64), 2, 64).is_ok());
        assert!(
            length("X", &"a".repeat(65), 2, 64)
                .unwrap_err()
                .to_string()
                .contains("X must be between 2 and 64")
        );
    }

    #[test]
    fn client_request_tokens_take_the_rust_sdk_form() {
        assert!(client_request_token("7ac68e29-a468-4162-f61d-3d91a1396be4").is_ok());
        assert!(client_request_token("a b").is_err());
        assert!(client_request_token("x").is_err());
    }

    /// Names real people have, with a multibyte character where a byte slice of the `aws:`
    /// prefix check would have split it (it used to panic and answer 500).
    #[test]
    fn accented_and_quoted_names_are_accepted() {
        for name in [
            "José",
            "Zoë",
            "Renée",
            "«Ana»",
            "abc«d",
            "ab\u{3000}c",
            "a\u{a0}b",
            "ÿÿÿÿ",
        ] {
            assert!(external_id("ExternalUserId", name).is_ok(), "{name}");
        }
        assert!(external_id("ExternalUserId", "aws\u{e9}x").is_ok());
        assert!(
            tag_key("Key", "aws\u{e9}").is_err(),
            "é is outside the TagKey pattern"
        );
    }

    #[test]
    fn external_ids() {
        assert!(external_id("ExternalUserId", "user 1/\u{fc}").is_ok());
        assert!(external_id("ExternalUserId", "a#b@c.d").is_ok());
        assert!(
            external_id("ExternalUserId", "AWS:thing")
                .unwrap_err()
                .to_string()
                .contains("reserved")
        );
        assert!(external_id("ExternalUserId", "用户用户").is_err());
        assert!(external_id("ExternalUserId", "a").is_err());
    }

    #[test]
    fn tag_patterns_use_the_character_range() {
        assert!(tag_key("Key", "team:a/b.c_d+1<=").is_ok());
        assert!(tag_key("Key", "a b").is_err());
        assert!(tag_key("Key", "").is_err());
        assert!(tag_key("Key", "aws:x").is_err());
        assert!(tag_value("Value", "").is_ok());
        assert!(tag_value("Value", "hello world_1@x.y").is_ok());
        assert!(tag_value("Value", "a*b").is_err());
    }

    #[test]
    fn tenant_ids_refuse_four_repeats() {
        assert!(tenant_id("TenantIds[0]", "abc-123").is_ok());
        assert!(tenant_id("TenantIds[0]", "aaab").is_ok());
        assert!(tenant_id("TenantIds[0]", "aaaab").is_err());
        assert!(tenant_id("TenantIds[0]", "ab cd").is_err());
    }

    #[test]
    fn arns() {
        assert!(amazon_resource_name("ResourceARN", "arn:aws:chime:x").is_ok());
        assert!(amazon_resource_name("ResourceARN", "nope").is_err());
        assert!(arn("SnsTopicArn", "arn:aws:sns:us-east-1:123:topic").is_ok());
        assert!(arn("SnsTopicArn", "arn:aws:sns:us east").is_err());
        assert!(arn("SnsTopicArn", "arn").is_err());
    }

    #[test]
    fn ranges_and_enums() {
        assert!(range("MaxResults", 0, 1, 100).is_err());
        assert!(range("MaxResults", 100, 1, 100).is_ok());
        assert!(one_of("X", "b", &["a", "b"]).is_ok());
        assert!(
            one_of("X", "c", &["a", "b"])
                .unwrap_err()
                .to_string()
                .contains("[a, b]")
        );
    }
}

#[cfg(test)]
mod messages {
    use super::*;

    /// The texts callers (and the SDK compatibility tests) see are the ones the checks always
    /// gave.
    #[test]
    fn violations_read_as_before() {
        let cases: [(Result<(), Violation>, &str); 5] = [
            (
                arn("SnsTopicArn", "arn:x y"),
                "SnsTopicArn must match the pattern ^arn[\\/\\:\\-\\_\\.a-zA-Z0-9]+$",
            ),
            (
                guid("MeetingId", "x"),
                "MeetingId must be a GUID matching [a-fA-F0-9]{8}(?:-[a-fA-F0-9]{4}){3}-[a-fA-F0-9]{12}, but is 'x'",
            ),
            (
                tag_value("Value", "a*b"),
                "Value must match the pattern [\\s\\w+-=\\.:/@]*, but contains '*'",
            ),
            (
                count("Tags", 51, 1, 50),
                "Tags must have between 1 and 50 items, but has 51",
            ),
            (
                one_of("X", "c", &["a", "b"]),
                "X must be one of [a, b], but is 'c'",
            ),
        ];
        for (result, message) in cases {
            assert_eq!(result.map_err(|v| v.to_string()), Err(message.to_string()));
        }
    }
}
