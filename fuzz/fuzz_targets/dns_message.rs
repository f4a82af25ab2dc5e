//! The DNS message parser and the TCP stream splitter, over any bytes: a
//! captured payload is whatever was on the wire (the dns probe copies up
//! to 512 bytes of any UDP/TCP port-53 packet).
//!
//! Beyond "no panic": the handler parses into a `Message` it reuses, so a
//! reused message must come out exactly as a fresh one (nothing left over
//! from the previous packet), and the limits hold.
#![no_main]

use libfuzzer_sys::fuzz_target;
use std::cell::RefCell;
use tapio::dnsmsg;

/// `dns.max_answers`' default.
const MAX_ANSWERS: usize = 8;

thread_local! {
    /// Carries the previous input's message, as the handler's does.
    static REUSED: RefCell<dnsmsg::Message> = RefCell::new(dnsmsg::Message::default());
}

fn check(msg: &[u8]) {
    let fresh = dnsmsg::parse(msg, MAX_ANSWERS);
    REUSED.with(|r| {
        let mut m = r.borrow_mut();
        let reused = dnsmsg::parse_into(msg, MAX_ANSWERS, &mut m);
        assert_eq!(fresh.as_ref().err(), reused.as_ref().err());
        if let Ok(f) = &fresh {
            assert_eq!(*f, *m, "a reused message differs from a fresh one");
            assert!(f.answers.len() <= MAX_ANSWERS);
            assert!(f.questions.len() <= 4);
            for q in &f.questions {
                let _ = dnsmsg::type_name(q.qtype);
            }
            let _ = dnsmsg::rcode_name(f.rcode);
        }
    });
}

fuzz_target!(|data: &[u8]| {
    check(data);
    let base = data.as_ptr() as usize;
    let mut total = 0;
    for m in dnsmsg::split_tcp(data) {
        // Each message is a piece of the stream, after its length prefix.
        let at = m.as_ptr() as usize - base;
        assert!(at >= 2 && at + m.len() <= data.len());
        total += m.len() + 2;
        check(m);
    }
    // Disjoint, in order: never more than the stream.
    assert!(total <= data.len());
});
