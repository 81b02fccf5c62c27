//! The wire decoders on any bytes: each of `GenerateJob`, `EventBatch` and `Control` either
//! refuses them with a `DecodeError` or decodes a message that encodes and decodes back to
//! itself (what a worker reads, it can write again unchanged).
#![no_main]

use clipfleet_proto::{Control, EventBatch, GenerateJob, Message, decode, encode};
use libfuzzer_sys::fuzz_target;

fn round_trip<M: Message + PartialEq + std::fmt::Debug>(data: &[u8]) {
    if let Ok(message) = decode::<M>(data) {
        let bytes = encode(&message).expect("a decoded message encodes");
        let again = decode::<M>(&bytes).expect("an encoded message decodes");
        assert_eq!(again, message, "round trip changed the message");
    }
}

fuzz_target!(|data: &[u8]| {
    round_trip::<GenerateJob>(data);
    round_trip::<EventBatch>(data);
    round_trip::<Control>(data);
});
