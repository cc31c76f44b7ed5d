//! Numbers and addresses as text, written without `core::fmt`: on the
//! request path (a response head, a CGI environment, a process's peer
//! variables) `format!` and `to_string` cost a CGI request about 3 500
//! instructions, a tenth of the host's share (`scripts/bench-instr`).

use std::net::IpAddr;

/// Appends `number` in `radix` digits (10, or 16 in lowercase).
///
/// ```
/// let mut bytes = b"Content-Length: ".to_vec();
/// mnvkd_host::text::push_number(&mut bytes, 1024, 10);
/// assert_eq!(bytes, b"Content-Length: 1024");
/// ```
pub fn push_number(bytes: &mut Vec<u8>, mut number: u64, radix: u64) {
    debug_assert!(radix == 10 || radix == 16);
    let mut digits = [0u8; 20];
    let mut at = digits.len();
    loop {
        at -= 1;
        digits[at] = b"0123456789abcdef"[(number % radix) as usize];
        number /= radix;
        if number == 0 {
            break;
        }
    }
    bytes.extend_from_slice(&digits[at..]);
}

/// `number` in decimal.
///
/// ```
/// assert_eq!(mnvkd_host::text::decimal(8080), "8080");
/// ```
pub fn decimal(number: u64) -> String {
    let mut bytes = Vec::with_capacity(20);
    push_number(&mut bytes, number, 10);
    String::from_utf8(bytes).expect("digits are ASCII")
}

/// `ip` as text: dotted decimal for IPv4 (written here), the standard form
/// for IPv6 (its rules for `::` are the standard library's to keep).
///
/// ```
/// use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
/// assert_eq!(mnvkd_host::text::ip(IpAddr::V4(Ipv4Addr::new(127, 0, 0, 1))), "127.0.0.1");
/// assert_eq!(mnvkd_host::text::ip(IpAddr::V6(Ipv6Addr::LOCALHOST)), "::1");
/// ```
pub fn ip(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => {
            let mut bytes = Vec::with_capacity(15);
            for (i, octet) in v4.octets().into_iter().enumerate() {
                if i > 0 {
                    bytes.push(b'.');
                }
                push_number(&mut bytes, u64::from(octet), 10);
            }
            String::from_utf8(bytes).expect("digits and dots are ASCII")
        }
        IpAddr::V6(v6) => v6.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    #[test]
    fn numbers_print_as_core_fmt_prints_them() {
        for number in [0, 7, 10, 200, 65_535, 1 << 32, u64::MAX] {
            assert_eq!(decimal(number), number.to_string());
            let mut hex = Vec::new();
            push_number(&mut hex, number, 16);
            assert_eq!(hex, format!("{number:x}").as_bytes());
        }
    }

    #[test]
    fn ipv4_addresses_print_as_core_fmt_prints_them() {
        for octets in [[0, 0, 0, 0], [127, 0, 0, 1], [10, 20, 255, 9], [255; 4]] {
            let v4 = Ipv4Addr::from(octets);
            assert_eq!(ip(IpAddr::V4(v4)), v4.to_string());
        }
    }
}
