#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| cattery_fuzz::search_request::check(data));
