//! The media regions the service documents for `MediaRegion`.

pub const MEDIA_REGIONS: &[&str] = &[
    "af-south-1",
    "ap-northeast-1",
    "ap-northeast-2",
    "ap-south-1",
    "ap-southeast-1",
    "ap-southeast-2",
    "ca-central-1",
    "eu-central-1",
    "eu-north-1",
    "eu-south-1",
    "eu-west-1",
    "eu-west-2",
    "eu-west-3",
    "sa-east-1",
    "us-east-1",
    "us-east-2",
    "us-west-1",
    "us-west-2",
    "us-gov-east-1",
    "us-gov-west-1",
];

/// The legacy API documents `us-east-1` as the default when MediaRegion is omitted.
pub const LEGACY_DEFAULT_MEDIA_REGION: &str = "us-east-1";

pub fn is_media_region(region: &str) -> bool {
    MEDIA_REGIONS.contains(&region)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_regions_pass_and_others_fail() {
        assert!(is_media_region("us-east-1"));
        assert!(is_media_region("us-gov-west-1"));
        assert!(!is_media_region("us-east-9"));
        assert!(!is_media_region("US-EAST-1"));
    }
}
