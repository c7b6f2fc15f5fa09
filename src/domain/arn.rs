//! ARNs: meetings (`arn:aws:chime:<region>:<account>:meeting/<MeetingId>`), media pipelines
//! (`…:media-pipeline/<MediaPipelineId>`) and the S3 buckets recordings go to
//! (`arn:aws:s3:::<bucket>[/<prefix>]`).

pub fn meeting_arn(region: &str, account: &str, meeting_id: &str) -> String {
    format!("arn:aws:chime:{region}:{account}:meeting/{meeting_id}")
}

/// The parts of a meeting ARN that name the resource.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MeetingArn {
    pub region: String,
    pub account: String,
    pub meeting_id: String,
}

/// Parses a meeting ARN. Anything else (another service, another resource type, a malformed
/// meeting id) is `None`: such an ARN names no resource this server holds.
pub fn parse_meeting_arn(arn: &str) -> Option<MeetingArn> {
    meeting_arn_parts(arn, false)
}

/// Parses a meeting ARN as callers of the legacy `chime` API write it: the form above, or the
/// global form of the legacy Amazon Chime documentation, with no region and the id after
/// `meeting:` (`arn:aws:chime::<account>:meeting:<MeetingId>`), which its media capture
/// pipelines' SourceArn takes.
pub fn parse_legacy_meeting_arn(arn: &str) -> Option<MeetingArn> {
    meeting_arn_parts(arn, true)
}

fn meeting_arn_parts(arn: &str, legacy: bool) -> Option<MeetingArn> {
    let mut parts = arn.splitn(6, ':');
    let (scheme, partition, service) = (parts.next()?, parts.next()?, parts.next()?);
    let (region, account, resource) = (parts.next()?, parts.next()?, parts.next()?);
    if scheme != "arn" || !partition.starts_with("aws") || service != "chime" {
        return None;
    }
    let meeting_id = match resource.strip_prefix("meeting/") {
        Some(id) => id,
        None if legacy => resource.strip_prefix("meeting:")?,
        None => return None,
    };
    if !super::ids::is_guid(meeting_id) || (region.is_empty() && !legacy) {
        return None;
    }
    Some(MeetingArn {
        region: region.to_string(),
        account: account.to_string(),
        meeting_id: super::ids::normalize(meeting_id),
    })
}

pub fn media_pipeline_arn(region: &str, account: &str, media_pipeline_id: &str) -> String {
    format!("arn:aws:chime:{region}:{account}:media-pipeline/{media_pipeline_id}")
}

/// The MediaPipelineId a media pipeline ARN names (any region and account; the caller checks
/// the account), lower-cased; None for anything else.
pub fn parse_media_pipeline_arn(arn: &str) -> Option<(String, String)> {
    let mut parts = arn.splitn(6, ':');
    let (scheme, partition, service) = (parts.next()?, parts.next()?, parts.next()?);
    let (_region, account, resource) = (parts.next()?, parts.next()?, parts.next()?);
    if scheme != "arn" || !partition.starts_with("aws") || service != "chime" {
        return None;
    }
    let id = resource.strip_prefix("media-pipeline/")?;
    super::ids::is_guid(id).then(|| (account.to_string(), super::ids::normalize(id)))
}

/// Where a recording goes: a bucket and the key prefix under it (empty when the ARN names
/// only the bucket).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BucketArn {
    pub bucket: String,
    pub prefix: String,
}

/// Parses an S3 bucket ARN, with an optional key prefix after the bucket. The bucket follows
/// S3's naming rules (3-63 lower-case letters, digits, dots and hyphens, beginning and ending
/// with a letter or digit); the prefix's segments must be non-empty and neither `.` nor `..`,
/// so that on the embedded sink no key leaves its bucket's folder.
pub fn parse_bucket_arn(arn: &str) -> Option<BucketArn> {
    let rest = arn
        .strip_prefix("arn:aws:s3:::")
        .or_else(|| arn.strip_prefix("arn:aws-cn:s3:::"))
        .or_else(|| arn.strip_prefix("arn:aws-us-gov:s3:::"))?;
    let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
    let prefix = prefix.trim_end_matches('/');
    let bucket_ok = (3..=63).contains(&bucket.len())
        && bucket
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'.' || b == b'-')
        && bucket.starts_with(|c: char| c.is_ascii_alphanumeric())
        && bucket.ends_with(|c: char| c.is_ascii_alphanumeric())
        && !bucket.contains("..");
    let prefix_ok = prefix.is_empty()
        || prefix
            .split('/')
            .all(|segment| !segment.is_empty() && segment != "." && segment != "..");
    (bucket_ok && prefix_ok).then(|| BucketArn {
        bucket: bucket.to_string(),
        prefix: prefix.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bucket_arns_with_and_without_a_prefix() {
        assert_eq!(
            parse_bucket_arn("arn:aws:s3:::my-recordings"),
            Some(BucketArn {
                bucket: "my-recordings".into(),
                prefix: String::new()
            })
        );
        assert_eq!(
            parse_bucket_arn("arn:aws:s3:::my.recordings/team/2026/"),
            Some(BucketArn {
                bucket: "my.recordings".into(),
                prefix: "team/2026".into()
            })
        );
        for bad in [
            "arn:aws:s3:::ab",
            "arn:aws:s3:::Upper",
            "arn:aws:s3:::-dash",
            "arn:aws:s3:::bucket/../escape",
            "arn:aws:s3:::bucket//double",
            "arn:aws:chime:us-east-1:1:meeting/x",
            "arn:aws:s3:::bucket_underscore",
        ] {
            assert_eq!(parse_bucket_arn(bad), None, "{bad}");
        }
    }

    #[test]
    fn round_trips() {
        let arn = meeting_arn(
            "us-east-1",
            "123456789012",
            "0b6d8a6e-5f0c-4b4c-9a43-1a2b3c4d5e6f",
        );
        assert_eq!(
            arn,
            "arn:aws:chime:us-east-1:123456789012:meeting/0b6d8a6e-5f0c-4b4c-9a43-1a2b3c4d5e6f"
        );
        let parsed = parse_meeting_arn(&arn).expect("parses");
        assert_eq!(parsed.account, "123456789012");
        assert_eq!(parsed.meeting_id, "0b6d8a6e-5f0c-4b4c-9a43-1a2b3c4d5e6f");
    }

    #[test]
    fn legacy_meeting_arns_may_be_global() {
        let id = "0B6D8A6E-5F0C-4B4C-9A43-1A2B3C4D5E6F";
        for arn in [
            format!("arn:aws:chime::123456789012:meeting:{id}"),
            format!("arn:aws:chime::123456789012:meeting/{id}"),
            format!("arn:aws:chime:us-east-1:123456789012:meeting/{id}"),
        ] {
            let parsed = parse_legacy_meeting_arn(&arn).expect("a legacy meeting ARN");
            assert_eq!(parsed.account, "123456789012", "{arn}");
            assert_eq!(parsed.meeting_id, id.to_lowercase(), "{arn}");
        }
        // The current API keeps its one form.
        assert!(parse_meeting_arn(&format!("arn:aws:chime::123456789012:meeting:{id}")).is_none());
        assert!(parse_meeting_arn(&format!("arn:aws:chime::123456789012:meeting/{id}")).is_none());
        assert!(parse_legacy_meeting_arn("arn:aws:chime::1:meeting:nope").is_none());
        assert!(parse_legacy_meeting_arn(&format!("arn:aws:chime::1:user:{id}")).is_none());
    }

    #[test]
    fn rejects_other_resources() {
        assert!(parse_meeting_arn("arn:aws:s3:::bucket").is_none());
        assert!(parse_meeting_arn("arn:aws:chime:us-east-1:1:meeting/nope").is_none());
        assert!(
            parse_meeting_arn(
                "arn:aws:chime:us-east-1:1:user/0b6d8a6e-5f0c-4b4c-9a43-1a2b3c4d5e6f"
            )
            .is_none()
        );
        assert!(parse_meeting_arn("arn:").is_none());
    }
}
