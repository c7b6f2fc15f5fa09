//! Meeting ARNs: `arn:aws:chime:<region>:<account>:meeting/<MeetingId>`.

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
    let mut parts = arn.splitn(6, ':');
    let (scheme, partition, service) = (parts.next()?, parts.next()?, parts.next()?);
    let (region, account, resource) = (parts.next()?, parts.next()?, parts.next()?);
    if scheme != "arn" || !partition.starts_with("aws") || service != "chime" {
        return None;
    }
    let meeting_id = resource.strip_prefix("meeting/")?;
    if !super::ids::is_guid(meeting_id) || region.is_empty() {
        return None;
    }
    Some(MeetingArn {
        region: region.to_string(),
        account: account.to_string(),
        meeting_id: super::ids::normalize(meeting_id),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

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
