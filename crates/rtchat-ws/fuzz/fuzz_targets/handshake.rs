//! Arbitrary bytes as an HTTP request head: parsing and validation must never
//! panic, and every rejection maps to a 4xx.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rtchat_ws::handshake::{parse_request, response_headers, select_subprotocol, validate_request};

fuzz_target!(|data: &[u8]| {
    match parse_request(data, 32) {
        Ok(Some((req, used))) => {
            assert!(used <= data.len());
            match validate_request(req.method(), req.version(), req.headers()) {
                Ok(v) => {
                    let p = select_subprotocol(req.headers(), &["chat", "json"]);
                    let h = response_headers(&v.accept, p);
                    assert_eq!(h.len(), 3 + p.is_some() as usize);
                }
                Err(e) => {
                    assert!(e.status().is_client_error());
                    let _ = e.to_response();
                }
            }
        }
        Ok(None) => {}
        Err(e) => assert!(e.status().is_client_error()),
    }
});
