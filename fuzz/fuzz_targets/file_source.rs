#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| cattery_fuzz::file_source::check(data));
