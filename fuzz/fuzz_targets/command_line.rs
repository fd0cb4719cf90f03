#![no_main]
#![allow(dead_code)]

include!("../targets.rs");

libfuzzer_sys::fuzz_target!(|data: &[u8]| command_line(data));
