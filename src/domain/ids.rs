//! Meeting and attendee identifiers.

/// The model's `GuidString` pattern, `[a-fA-F0-9]{8}(?:-[a-fA-F0-9]{4}){3}-[a-fA-F0-9]{12}`,
/// checked as a full match (the model's patterns are unanchored, the service's checks are not).
pub fn is_guid(s: &str) -> bool {
    let bytes = s.as_bytes();
    if bytes.len() != 36 {
        return false;
    }
    bytes.iter().enumerate().all(|(i, b)| match i {
        8 | 13 | 18 | 23 => *b == b'-',
        _ => b.is_ascii_hexdigit(),
    })
}

/// A fresh lowercase version 4 UUID, the form the real service uses for MeetingId (and
/// request and event ids). Its random bits come from the thread's CSPRNG (`rand::rng()`, seeded
/// from the OS), not from a `getrandom` system call per id as `Uuid::new_v4` makes: ids are
/// minted several times per request, one of them on the store's writer thread.
pub fn new_id() -> String {
    uuid::Builder::from_random_bytes(rand::random())
        .into_uuid()
        .to_string()
}

/// A fresh AttendeeId: the GuidString form of the real service's, whose 32 hex digits carry no
/// RFC 4122 version either. The first 12 are the milliseconds since the Unix epoch and the other
/// 20 are random (80 bits), so that ids created one after another sort one after another: the
/// embedded store's index of attendees by id then grows at its end instead of dirtying a random
/// page of it per attendee, and ListAttendees lists a meeting's attendees in the order they were
/// created. An AttendeeId is no secret (everyone in the meeting sees it); the JoinToken is.
pub fn new_attendee_id() -> String {
    use rand::RngCore;
    let millis = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_millis() as u64);
    let mut bytes = [0u8; 16];
    let (time, random) = bytes.split_at_mut(6);
    time.copy_from_slice(&millis.to_be_bytes()[2..]);
    rand::rng().fill_bytes(random);
    // Only formatted: `from_bytes` sets no version or variant bits.
    uuid::Uuid::from_bytes(bytes).to_string()
}

/// IDs are compared case-insensitively by the service; we store them lowercase.
pub fn normalize(id: &str) -> String {
    id.to_ascii_lowercase()
}

/// `len` characters drawn at random from `alphabet` (key ids, secrets, account ids).
pub fn random_string(alphabet: &[u8], len: usize) -> String {
    use rand::RngCore;
    let mut bytes = vec![0u8; len];
    rand::rng().fill_bytes(&mut bytes);
    bytes
        .iter()
        .filter_map(|b| alphabet.get(*b as usize % alphabet.len()))
        .map(|b| *b as char)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attendee_ids_are_guids_that_sort_in_creation_order() {
        let first = new_attendee_id();
        std::thread::sleep(std::time::Duration::from_millis(2));
        let second = new_attendee_id();
        assert!(is_guid(&first) && is_guid(&second), "{first} {second}");
        assert_eq!(first, first.to_ascii_lowercase());
        assert!(first < second, "{first} then {second}");
        assert_ne!(new_attendee_id(), new_attendee_id());
    }

    #[test]
    fn guid_pattern_is_a_full_match() {
        assert!(is_guid("0b6d8a6e-5f0c-4b4c-9a43-1a2b3c4d5e6f"));
        assert!(is_guid("0B6D8A6E-5F0C-4B4C-9A43-1A2B3C4D5E6F"));
        assert!(!is_guid("not-a-guid"));
        assert!(!is_guid("0b6d8a6e-5f0c-4b4c-9a43-1a2b3c4d5e6f0"));
        assert!(!is_guid("0b6d8a6e5f0c-4b4c-9a43-1a2b3c4d5e6f-"));
        assert!(!is_guid("0b6d8a6g-5f0c-4b4c-9a43-1a2b3c4d5e6f"));
        assert!(!is_guid(""));
    }

    #[test]
    fn new_ids_are_lowercase_guids() {
        let id = new_id();
        assert!(is_guid(&id));
        assert_eq!(id, id.to_ascii_lowercase());
        assert_ne!(new_id(), id);
        let parsed = uuid::Uuid::parse_str(&id).expect("a UUID");
        assert_eq!(parsed.get_version_num(), 4);
        assert_eq!(parsed.get_variant(), uuid::Variant::RFC4122);
    }
}
