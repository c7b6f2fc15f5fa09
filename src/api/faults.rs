//! Fault injection, for users testing their own clients' retries and timeouts: chosen operations
//! fail with a chosen modelled error, at a rate or for the next N calls, or answer late.
//! Driven through the admin extension (`/_carillon/faults`) and `carillon faults`.

use std::sync::Mutex;
use std::time::Duration;

use rand::Rng;
use serde::{Deserialize, Serialize};

use super::error::{ApiError, ErrorKind};
use super::namespace::Namespace;
use super::operation::Operation;

/// The longest latency a fault may add: well past the SDKs' default timeouts, well short of
/// holding a request forever.
pub const MAX_LATENCY_MS: u64 = 120_000;
/// How many faults may be armed at once.
pub const MAX_FAULTS: usize = 100;

/// A fault as the admin API takes it.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FaultSpec {
    /// An operation name (`CreateAttendee`) or `*` for every operation.
    pub operation: String,
    /// `chime-sdk-meetings` or `legacy`; both when absent.
    #[serde(default)]
    pub namespace: Option<String>,
    /// The exception to answer with, by its model name (`ServiceUnavailableException`).
    #[serde(default)]
    pub error: Option<String>,
    /// The error message; a default one names the injection.
    #[serde(default)]
    pub message: Option<String>,
    /// The share of matching calls affected, in (0, 1]; every one when absent.
    #[serde(default)]
    pub rate: Option<f64>,
    /// Affect only the next N matching calls; every one (until cleared) when absent.
    #[serde(default)]
    pub count: Option<u64>,
    /// Extra time before the call is answered.
    #[serde(default)]
    pub latency_ms: Option<u64>,
}

/// An armed fault, as the admin API shows it.
#[derive(Debug, Clone, Serialize)]
pub struct Fault {
    pub id: u64,
    pub operation: String,
    pub namespace: Option<String>,
    pub error: Option<String>,
    pub message: Option<String>,
    pub rate: f64,
    /// Calls left to affect; absent for a fault that lasts until cleared.
    pub remaining: Option<u64>,
    pub latency_ms: u64,
    /// Calls affected so far.
    pub injected: u64,
    #[serde(skip)]
    target: Option<Operation>,
    #[serde(skip)]
    only: Option<Namespace>,
    #[serde(skip)]
    kind: Option<ErrorKind>,
}

/// What a call draws from the armed faults.
#[derive(Debug, Default)]
pub struct Injection {
    pub latency: Duration,
    pub error: Option<ApiError>,
}

/// Why a fault is refused (answered 400 by the admin API).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum FaultError {
    #[error("operation '{0}' is not an operation of this API")]
    UnknownOperation(String),
    #[error(
        "namespace must be 'chime-sdk-meetings', 'legacy' or 'chime-sdk-media-pipelines', not '{0}'"
    )]
    UnknownNamespace(String),
    #[error("error '{0}' is not an exception of this API")]
    UnknownError(String),
    /// The error is not in the model of the operation (of any operation, for `*`).
    #[error("{error} is not a modelled error of {operation}")]
    Unmodelled { error: String, operation: String },
    #[error("rate must be above 0 and at most 1, not {0}")]
    Rate(f64),
    #[error("count must be at least 1")]
    Count,
    #[error("latency_ms must be at most {max}", max = MAX_LATENCY_MS)]
    Latency,
    #[error("a fault needs an error, a latency_ms, or both")]
    NothingToInject,
    #[error("message must be at most 1024 characters")]
    MessageTooLong,
    #[error("at most {max} faults may be armed; clear some first", max = MAX_FAULTS)]
    TooMany,
}

#[derive(Default)]
pub struct Faults {
    armed: Mutex<(u64, Vec<Fault>)>,
}

fn parse_namespace(name: &str) -> Result<Namespace, FaultError> {
    match name {
        "chime-sdk-meetings" => Ok(Namespace::Meetings),
        "legacy" | "chime" => Ok(Namespace::Legacy),
        "chime-sdk-media-pipelines" | "media-pipelines" => Ok(Namespace::MediaPipelines),
        other => Err(FaultError::UnknownNamespace(other.to_string())),
    }
}

/// What a spec aims at once checked: an operation (all when `None`), a namespace (both when
/// `None`) and the error kind to answer with.
type Aim = (Option<Operation>, Option<Namespace>, Option<ErrorKind>);

impl FaultSpec {
    /// Checks the spec: a known operation, an error that operation's model lists (so the SDK
    /// raises its own exception class), a rate in (0, 1], and something to inject.
    fn check(&self) -> Result<Aim, FaultError> {
        let target = match self.operation.as_str() {
            "*" => None,
            name => Some(
                Operation::from_name(name)
                    .ok_or_else(|| FaultError::UnknownOperation(name.to_string()))?,
            ),
        };
        let only = self.namespace.as_deref().map(parse_namespace).transpose()?;
        let kind = match &self.error {
            None => None,
            Some(name) => {
                let kind = ErrorKind::from_shape_name(name)
                    .ok_or_else(|| FaultError::UnknownError(name.to_string()))?;
                let namespaces = match only {
                    Some(ns) => vec![ns],
                    None => vec![
                        Namespace::Meetings,
                        Namespace::Legacy,
                        Namespace::MediaPipelines,
                    ],
                };
                let operations = match target {
                    Some(op) => vec![op],
                    None => Operation::ALL.to_vec(),
                };
                let modelled = operations
                    .iter()
                    .any(|op| namespaces.iter().any(|ns| op.errors(*ns).contains(&kind)));
                if !modelled {
                    return Err(FaultError::Unmodelled {
                        error: name.clone(),
                        operation: self.operation.clone(),
                    });
                }
                Some(kind)
            }
        };
        if let Some(rate) = self.rate
            && !(rate > 0.0 && rate <= 1.0)
        {
            return Err(FaultError::Rate(rate));
        }
        if self.count == Some(0) {
            return Err(FaultError::Count);
        }
        if self.latency_ms.is_some_and(|ms| ms > MAX_LATENCY_MS) {
            return Err(FaultError::Latency);
        }
        if kind.is_none() && self.latency_ms.unwrap_or(0) == 0 {
            return Err(FaultError::NothingToInject);
        }
        if self
            .message
            .as_ref()
            .is_some_and(|m| m.chars().count() > 1024)
        {
            return Err(FaultError::MessageTooLong);
        }
        Ok((target, only, kind))
    }
}

impl Faults {
    pub fn arm(&self, spec: FaultSpec) -> Result<Fault, FaultError> {
        let (target, only, kind) = spec.check()?;
        let mut armed = self.lock();
        if armed.1.len() >= MAX_FAULTS {
            return Err(FaultError::TooMany);
        }
        armed.0 += 1;
        let fault = Fault {
            id: armed.0,
            operation: spec.operation,
            namespace: spec.namespace,
            error: spec.error,
            message: spec.message,
            rate: spec.rate.unwrap_or(1.0),
            remaining: spec.count,
            latency_ms: spec.latency_ms.unwrap_or(0),
            injected: 0,
            target,
            only,
            kind,
        };
        armed.1.push(fault.clone());
        Ok(fault)
    }

    pub fn list(&self) -> Vec<Fault> {
        self.lock().1.clone()
    }

    pub fn clear(&self) {
        self.lock().1.clear();
    }

    /// Disarms one fault; false when there is no such fault.
    pub fn disarm(&self, id: u64) -> bool {
        let mut armed = self.lock();
        let before = armed.1.len();
        armed.1.retain(|f| f.id != id);
        armed.1.len() != before
    }

    /// What a call of `operation` in `namespace` suffers: the first armed fault that matches
    /// and whose dice say yes. A fault with a count is spent by the calls it affects.
    pub fn draw(&self, namespace: Namespace, operation: Operation) -> Injection {
        let mut armed = self.lock();
        if armed.1.is_empty() {
            return Injection::default();
        }
        let mut injection = Injection::default();
        let mut rng = rand::rng();
        for fault in armed.1.iter_mut() {
            let matches = fault.target.is_none_or(|op| op == operation)
                && fault.only.is_none_or(|ns| ns == namespace);
            if !matches || (fault.rate < 1.0 && !rng.random_bool(fault.rate)) {
                continue;
            }
            fault.injected += 1;
            if let Some(remaining) = fault.remaining.as_mut() {
                *remaining = remaining.saturating_sub(1);
            }
            injection.latency = Duration::from_millis(fault.latency_ms);
            injection.error = fault.kind.map(|kind| {
                let message = fault.message.clone().unwrap_or_else(|| {
                    format!("Injected by Carillon fault {} for testing", fault.id)
                });
                ApiError::new(kind, message)
            });
            break;
        }
        armed.1.retain(|f| f.remaining != Some(0));
        injection
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, (u64, Vec<Fault>)> {
        match self.armed.lock() {
            Ok(guard) => guard,
            Err(poisoned) => poisoned.into_inner(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(operation: &str, error: Option<&str>) -> FaultSpec {
        FaultSpec {
            operation: operation.into(),
            namespace: None,
            error: error.map(str::to_string),
            message: None,
            rate: None,
            count: None,
            latency_ms: None,
        }
    }

    #[test]
    fn a_counted_fault_affects_the_next_calls_then_disarms() {
        let faults = Faults::default();
        faults
            .arm(FaultSpec {
                count: Some(2),
                ..spec("CreateAttendee", Some("ServiceUnavailableException"))
            })
            .expect("armed");
        let hit = |op| faults.draw(Namespace::Meetings, op).error.map(|e| e.kind);
        assert_eq!(hit(Operation::GetAttendee), None);
        assert_eq!(
            hit(Operation::CreateAttendee),
            Some(ErrorKind::ServiceUnavailable)
        );
        assert_eq!(
            hit(Operation::CreateAttendee),
            Some(ErrorKind::ServiceUnavailable)
        );
        assert_eq!(hit(Operation::CreateAttendee), None);
        assert!(faults.list().is_empty());
    }

    #[test]
    fn only_modelled_errors_and_sane_values_are_accepted() {
        let faults = Faults::default();
        assert_eq!(
            faults
                .arm(spec("GetMeeting", Some("ConflictException")))
                .unwrap_err()
                .to_string(),
            "ConflictException is not a modelled error of GetMeeting"
        );
        assert!(
            faults
                .arm(spec("GetMeetin", Some("NotFoundException")))
                .is_err()
        );
        assert!(faults.arm(spec("*", Some("NoSuchException"))).is_err());
        assert!(faults.arm(spec("*", None)).is_err(), "nothing to inject");
        assert_eq!(
            faults
                .arm(FaultSpec {
                    rate: Some(1.5),
                    ..spec("*", Some("ThrottlingException"))
                })
                .map_err(|e| e.to_string())
                .err(),
            Some("rate must be above 0 and at most 1, not 1.5".to_string())
        );
        assert_eq!(
            faults
                .arm(FaultSpec {
                    latency_ms: Some(MAX_LATENCY_MS + 1),
                    ..spec("*", None)
                })
                .map_err(|e| e.to_string())
                .err(),
            Some("latency_ms must be at most 120000".to_string())
        );
        let legacy = faults
            .arm(FaultSpec {
                namespace: Some("legacy".into()),
                ..spec("ListAttendees", Some("ThrottledClientException"))
            })
            .expect("legacy throttling");
        assert_eq!(
            faults
                .draw(Namespace::Meetings, Operation::ListAttendees)
                .error,
            None
        );
        assert!(faults.disarm(legacy.id));
        assert!(!faults.disarm(legacy.id));
    }

    #[test]
    fn latency_alone_is_a_fault() {
        let faults = Faults::default();
        faults
            .arm(FaultSpec {
                latency_ms: Some(250),
                ..spec("*", None)
            })
            .expect("armed");
        let injection = faults.draw(Namespace::Legacy, Operation::GetMeeting);
        assert_eq!(injection.latency, Duration::from_millis(250));
        assert!(injection.error.is_none());
    }
}
