//! IP ranges in CIDR notation, for overlap checks between clusters.

use std::fmt;
use std::net::IpAddr;

/// An IPv4 or IPv6 range such as `10.1.0.0/16`. The address is kept masked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    /// The masked network address as a 128-bit number (IPv4 in the low 32 bits).
    network: u128,
    prefix: u8,
    v6: bool,
}

impl Cidr {
    pub fn parse(s: &str) -> Result<Cidr, String> {
        let (addr, prefix) = s
            .split_once('/')
            .ok_or_else(|| "expected address/prefix, e.g. 10.1.0.0/16".to_string())?;
        let addr: IpAddr = addr
            .parse()
            .map_err(|_| format!("`{addr}` is not an IP address"))?;
        let prefix: u8 = prefix
            .parse()
            .map_err(|_| format!("`{prefix}` is not a prefix length"))?;
        let (bits, v6, width) = match addr {
            IpAddr::V4(a) => (u32::from(a) as u128, false, 32u8),
            IpAddr::V6(a) => (u128::from(a), true, 128u8),
        };
        if prefix > width {
            return Err(format!("prefix /{prefix} is longer than {width} bits"));
        }
        let mask = Self::mask(prefix, width);
        if bits & !mask != 0 {
            return Err("host bits are set (the address is not the start of the range)".into());
        }
        Ok(Cidr {
            network: bits & mask,
            prefix,
            v6,
        })
    }

    fn mask(prefix: u8, width: u8) -> u128 {
        let all: u128 = if width == 32 {
            u32::MAX as u128
        } else {
            u128::MAX
        };
        if prefix == 0 {
            0
        } else {
            all & !((1u128 << (width - prefix)) - 1)
        }
    }

    /// Whether two ranges share at least one address.
    pub fn overlaps(&self, other: &Cidr) -> bool {
        if self.v6 != other.v6 {
            return false;
        }
        let width = if self.v6 { 128 } else { 32 };
        let shorter = self.prefix.min(other.prefix);
        let mask = Self::mask(shorter, width);
        self.network & mask == other.network & mask
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let addr: IpAddr = if self.v6 {
            IpAddr::V6(self.network.into())
        } else {
            IpAddr::V4((self.network as u32).into())
        };
        write!(f, "{addr}/{}", self.prefix)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overlap_rules() {
        let a = Cidr::parse("10.1.0.0/16").unwrap();
        let b = Cidr::parse("10.1.128.0/17").unwrap();
        let c = Cidr::parse("10.2.0.0/16").unwrap();
        assert!(a.overlaps(&b) && b.overlaps(&a));
        assert!(!a.overlaps(&c));
        assert!(Cidr::parse("10.1.0.1/16").is_err());
        assert!(Cidr::parse("10.1.0.0").is_err());
        assert!(Cidr::parse("10.1.0.0/33").is_err());
        assert_eq!(Cidr::parse("fd00::/8").unwrap().to_string(), "fd00::/8");
        assert!(!a.overlaps(&Cidr::parse("::/0").unwrap()));
    }
}
