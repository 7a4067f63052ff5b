//! The payload of one history message: one channel's batch of events, as the cluster layer encoded
//! them, each behind its length. The offsets are not in the payload: the first is the message's
//! `Vestnik-First` header, the others follow by one (see `wire`).
//!
//! Layout: a version byte (`1`), then for each event its length (4 bytes, big endian) and its
//! bytes. Decoding slices the payload (no copy) and refuses anything malformed rather than guess.

use bytes::{BufMut, Bytes, BytesMut};

/// The layout's version byte.
const VERSION: u8 = 1;

/// Encodes a batch of events into one payload.
pub(crate) fn encode<'a>(events: impl IntoIterator<Item = &'a Bytes>) -> Bytes {
    let mut out = BytesMut::new();
    out.put_u8(VERSION);
    for event in events {
        let len = u32::try_from(event.len()).unwrap_or(u32::MAX);
        out.put_u32(len);
        out.put_slice(&event[..len as usize]);
    }
    out.freeze()
}

/// The encoded size of a batch with events of these lengths, to split batches under the server's
/// max payload.
pub(crate) fn encoded_len(event_len: usize) -> usize {
    4 + event_len
}

/// Decodes a payload into its events, or `None` when it is not one this module wrote.
pub(crate) fn decode(payload: &Bytes) -> Option<Vec<Bytes>> {
    let (&version, mut rest) = payload.split_first()?;
    if version != VERSION {
        return None;
    }
    let mut at = 1;
    let mut out = Vec::new();
    while !rest.is_empty() {
        let len: [u8; 4] = rest.get(..4)?.try_into().ok()?;
        let len = u32::from_be_bytes(len) as usize;
        let end = at + 4 + len;
        if end > payload.len() {
            return None;
        }
        out.push(payload.slice(at + 4..end));
        at = end;
        rest = &payload[at..];
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_refusals() {
        let events = [
            Bytes::from_static(b"one"),
            Bytes::new(),
            Bytes::from(vec![7u8; 300]),
        ];
        let payload = encode(&events);
        assert_eq!(
            payload.len(),
            1 + events.iter().map(|e| encoded_len(e.len())).sum::<usize>()
        );
        assert_eq!(decode(&payload).expect("decodes"), events);
        assert_eq!(
            decode(&encode([])).expect("empty batch"),
            Vec::<Bytes>::new()
        );
        assert!(decode(&Bytes::new()).is_none(), "no version byte");
        assert!(
            decode(&Bytes::from_static(&[2])).is_none(),
            "unknown version"
        );
        let truncated = payload.slice(..payload.len() - 1);
        assert!(decode(&truncated).is_none(), "truncated event");
        assert!(
            decode(&Bytes::from_static(&[1, 0, 0])).is_none(),
            "truncated length"
        );
    }
}
