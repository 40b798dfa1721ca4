//! Arbitrary bytes through the frame decoder of both directions: it may
//! refuse them, never panic, and never allocate past MAX_FRAME_LEN.
#![no_main]

use libfuzzer_sys::fuzz_target;
use prx_ipc::{FromWorker, ToWorker, read_frame};

fuzz_target!(|data: &[u8]| {
    let mut input = data;
    // A stream of frames, as the supervisor reads them from a worker.
    while !input.is_empty() {
        if read_frame::<FromWorker>(&mut input).is_err() {
            break;
        }
    }
    let mut input = data;
    while !input.is_empty() {
        if read_frame::<ToWorker>(&mut input).is_err() {
            break;
        }
    }
    // A decoded frame must encode back to a frame that decodes the same.
    if let Ok(msg) = read_frame::<FromWorker>(&mut &data[..]) {
        let bytes = prx_ipc::encode(&msg).expect("a decoded message encodes");
        let again: FromWorker = read_frame(&mut bytes.as_slice()).expect("re-decodes");
        assert_eq!(again, msg);
    }
});
