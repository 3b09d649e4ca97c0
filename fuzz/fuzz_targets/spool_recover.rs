#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| cattery_fuzz::spool_recover::check(data));
