//! Netlink batches beside the ones nft sent (captured with `strace -e
//! write=3`): their messages, and the comparison of ours with nft's.

/// The messages of a batch: (header, payload).
pub fn messages(mut buf: &[u8]) -> Vec<(Vec<u8>, Vec<u8>)> {
    let mut out = Vec::new();
    while buf.len() >= 16 {
        let len = u32::from_ne_bytes([buf[0], buf[1], buf[2], buf[3]]) as usize;
        out.push((buf[..16].to_vec(), buf[16..len].to_vec()));
        buf = &buf[len.next_multiple_of(4).min(buf.len())..];
    }
    out
}

/// Our batch's messages with its last change's acknowledgement flag taken
/// off (ours asks for it, nft does not; it must be there).
pub fn unacked(mut m: Vec<(Vec<u8>, Vec<u8>)>) -> Vec<(Vec<u8>, Vec<u8>)> {
    let last = m.len() - 2;
    let flags = u16::from_ne_bytes([m[last].0[6], m[last].0[7]]);
    assert_eq!(flags & 4, 4, "the last change asks for an acknowledgement");
    m[last].0[6..8].copy_from_slice(&(flags & !4).to_ne_bytes());
    m
}

/// Our batch `ours` is nft's `nft`, message for message and byte for byte
/// (but the acknowledgement we ask for); `what(i)` names message `i` in a
/// failure.
pub fn assert_batch_eq(ours: &[u8], nft: &[u8], what: impl Fn(usize) -> String) {
    let (ours, nft) = (unacked(messages(ours)), messages(nft));
    for (i, ((oh, op), (nh, np))) in ours.iter().zip(&nft).enumerate() {
        let at = op.iter().zip(np).position(|(a, b)| a != b);
        assert!(
            op == np,
            "message {i} ({}): {} bytes, nft's {}, differ from byte {at:?}",
            what(i),
            op.len(),
            np.len()
        );
        assert_eq!(oh, nh, "message {i}'s header ({})", what(i));
    }
    assert_eq!(ours.len(), nft.len(), "the number of messages");
}
