//! Attendee capabilities and meeting features, with the documented rules that tie them together.

use serde::{Deserialize, Serialize};

/// `MediaCapabilities`: what an attendee may do on one media channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum MediaCapability {
    SendReceive,
    Send,
    Receive,
    None,
}

impl MediaCapability {
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "SendReceive" => Self::SendReceive,
            "Send" => Self::Send,
            "Receive" => Self::Receive,
            "None" => Self::None,
            _ => return Option::None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::SendReceive => "SendReceive",
            Self::Send => "Send",
            Self::Receive => "Receive",
            Self::None => "None",
        }
    }

    pub fn receives(self) -> bool {
        matches!(self, Self::SendReceive | Self::Receive)
    }

    pub fn sends(self) -> bool {
        matches!(self, Self::SendReceive | Self::Send)
    }
}

/// A documented rule that requested capabilities break; the text is the 400's message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum CapabilityError {
    /// Video asked of a meeting created with `MeetingFeatures.Video.MaxResolution` None.
    #[error(
        "Capabilities.Video {} is not allowed: the meeting was created with MeetingFeatures.Video.MaxResolution None",
        .0.as_str()
    )]
    VideoDisabled(MediaCapability),
    /// Content asked of a meeting created with `MeetingFeatures.Content.MaxResolution` None.
    #[error(
        "Capabilities.Content {} is not allowed: the meeting was created with MeetingFeatures.Content.MaxResolution None",
        .0.as_str()
    )]
    ContentDisabled(MediaCapability),
    /// Receiving content without receiving video.
    #[error(
        "Capabilities.Content {} requires Capabilities.Video SendReceive or Receive, not {}",
        .content.as_str(),
        .video.as_str()
    )]
    ContentNeedsVideo {
        content: MediaCapability,
        video: MediaCapability,
    },
}

/// `AttendeeCapabilities`: all three channels are required when the structure is given.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Capabilities {
    pub audio: MediaCapability,
    pub video: MediaCapability,
    pub content: MediaCapability,
}

/// `MeetingFeaturesConfiguration`, kept exactly as the caller gave it (the service echoes only
/// what was supplied). Enum values are checked by `api::input` before one of these is built.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct MeetingFeatures {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub audio: Option<AudioFeatures>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub video: Option<ResolutionFeatures>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub content: Option<ResolutionFeatures>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub attendee: Option<AttendeeFeatures>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct AudioFeatures {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub echo_reduction: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ResolutionFeatures {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_resolution: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct AttendeeFeatures {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_count: Option<i64>,
}

/// The attendee cap the documentation gives when a meeting asks for high-definition media
/// (FHD video or UHD content) without an explicit `Attendee.MaxCount`.
pub const HIGH_DEFINITION_ATTENDEE_CAP: u32 = 25;

impl MeetingFeatures {
    fn video_resolution(&self) -> Option<&str> {
        self.video.as_ref()?.max_resolution.as_deref()
    }

    fn content_resolution(&self) -> Option<&str> {
        self.content.as_ref()?.max_resolution.as_deref()
    }

    fn video_disabled(&self) -> bool {
        self.video_resolution() == Some("None")
    }

    fn content_disabled(&self) -> bool {
        self.content_resolution() == Some("None")
    }

    /// How many attendees the meeting holds: `Attendee.MaxCount` if given, else the server
    /// default, lowered to 25 for FHD video or UHD content as documented.
    pub fn attendee_cap(&self, server_default: u32) -> u32 {
        if let Some(max) = self.attendee.as_ref().and_then(|a| a.max_count) {
            // Validated to 1..=250 on input; the clamp only guards stored data.
            return max.clamp(1, i64::from(u32::MAX)) as u32;
        }
        let high_definition =
            self.video_resolution() == Some("FHD") || self.content_resolution() == Some("UHD");
        if high_definition {
            server_default.min(HIGH_DEFINITION_ATTENDEE_CAP)
        } else {
            server_default
        }
    }

    /// The capabilities an attendee gets when the request gives none.
    pub fn default_capabilities(&self) -> Capabilities {
        use MediaCapability::*;
        let (video, content) = match (self.video_disabled(), self.content_disabled()) {
            (false, false) => (SendReceive, SendReceive),
            (false, true) => (SendReceive, None),
            // Documented: video off but content on gives Video=Receive, Content=SendReceive.
            (true, false) => (Receive, SendReceive),
            (true, true) => (None, None),
        };
        Capabilities {
            audio: SendReceive,
            video,
            content,
        }
    }

    /// Checks requested capabilities against the documented rules; the error names the rule.
    pub fn check_capabilities(&self, caps: &Capabilities) -> Result<(), CapabilityError> {
        if self.video_disabled() && caps.video != MediaCapability::None {
            return Err(CapabilityError::VideoDisabled(caps.video));
        }
        if self.content_disabled() && caps.content != MediaCapability::None {
            return Err(CapabilityError::ContentDisabled(caps.content));
        }
        check_content_needs_video(caps)
    }
}

/// Receiving content requires receiving video (the client renders content as a video tile).
pub fn check_content_needs_video(caps: &Capabilities) -> Result<(), CapabilityError> {
    if caps.content.receives() && !caps.video.receives() {
        return Err(CapabilityError::ContentNeedsVideo {
            content: caps.content,
            video: caps.video,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::MediaCapability::*;
    use super::*;

    fn features(video: Option<&str>, content: Option<&str>) -> MeetingFeatures {
        MeetingFeatures {
            video: video.map(|v| ResolutionFeatures {
                max_resolution: Some(v.into()),
            }),
            content: content.map(|c| ResolutionFeatures {
                max_resolution: Some(c.into()),
            }),
            ..Default::default()
        }
    }

    fn caps(
        audio: MediaCapability,
        video: MediaCapability,
        content: MediaCapability,
    ) -> Capabilities {
        Capabilities {
            audio,
            video,
            content,
        }
    }

    #[test]
    fn defaults_follow_the_documented_table() {
        assert_eq!(
            features(Option::None, Option::None).default_capabilities(),
            caps(SendReceive, SendReceive, SendReceive)
        );
        assert_eq!(
            features(Some("None"), Some("FHD")).default_capabilities(),
            caps(SendReceive, Receive, SendReceive)
        );
        assert_eq!(
            features(Some("HD"), Some("None")).default_capabilities(),
            caps(SendReceive, SendReceive, None)
        );
        assert_eq!(
            features(Some("None"), Some("None")).default_capabilities(),
            caps(SendReceive, None, None)
        );
    }

    #[test]
    fn disabled_channels_reject_any_use() {
        let f = features(Some("None"), Option::None);
        for v in [SendReceive, Send, Receive] {
            assert!(f.check_capabilities(&caps(SendReceive, v, None)).is_err());
        }
        assert!(f.check_capabilities(&caps(SendReceive, None, None)).is_ok());
        assert_eq!(
            f.check_capabilities(&caps(SendReceive, Receive, None))
                .map_err(|e| e.to_string()),
            Err("Capabilities.Video Receive is not allowed: the meeting was created with MeetingFeatures.Video.MaxResolution None".to_string())
        );
        let f = features(Option::None, Some("None"));
        assert!(
            f.check_capabilities(&caps(SendReceive, SendReceive, Send))
                .is_err()
        );
    }

    #[test]
    fn receiving_content_needs_receiving_video() {
        let f = MeetingFeatures::default();
        assert_eq!(
            f.check_capabilities(&caps(None, Send, Receive))
                .map_err(|e| e.to_string()),
            Err("Capabilities.Content Receive requires Capabilities.Video SendReceive or Receive, not Send".to_string())
        );
        assert!(
            f.check_capabilities(&caps(None, None, SendReceive))
                .is_err()
        );
        assert!(f.check_capabilities(&caps(None, Receive, Receive)).is_ok());
        assert!(f.check_capabilities(&caps(None, Send, Send)).is_ok());
        assert!(f.check_capabilities(&caps(None, Receive, None)).is_ok());
    }

    #[test]
    fn attendee_cap_honours_max_count_and_high_definition() {
        assert_eq!(MeetingFeatures::default().attendee_cap(250), 250);
        assert_eq!(features(Some("FHD"), Option::None).attendee_cap(250), 25);
        assert_eq!(features(Option::None, Some("UHD")).attendee_cap(250), 25);
        let mut f = features(Some("FHD"), Option::None);
        f.attendee = Some(AttendeeFeatures {
            max_count: Some(100),
        });
        assert_eq!(f.attendee_cap(250), 100);
    }
}
