//! Checks on CSI request fields shared by the Controller and Node services.

use crate::error::{Error, Result, required};
use ferry_proto::v1::volume_capability::{AccessType, access_mode::Mode};
use ferry_proto::v1::{CapacityRange, VolumeCapability};

/// Filesystems ferry formats and mounts.
pub const FS_TYPES: [&str; 2] = ["ext4", "xfs"];

/// Checks one volume capability; `Ok(None)` when supported, `Ok(Some(reason))` when well
/// formed but not supported.
///
/// # Errors
/// INVALID_ARGUMENT when the access type or mode is missing.
pub fn capability(cap: &VolumeCapability) -> Result<Option<String>> {
    let access = cap
        .access_type
        .as_ref()
        .ok_or_else(|| required("volume_capability.access_type (block or mount)"))?;
    let mode = cap
        .access_mode
        .as_ref()
        .ok_or_else(|| required("volume_capability.access_mode"))?
        .mode();
    if mode == Mode::Unknown {
        return Err(required("volume_capability.access_mode.mode"));
    }
    if let AccessType::Mount(m) = access
        && !m.fs_type.is_empty()
        && !FS_TYPES.contains(&m.fs_type.as_str())
    {
        return Ok(Some(format!(
            "fs_type {:?} is not supported: use ext4 or xfs",
            m.fs_type
        )));
    }
    Ok(match mode {
        Mode::SingleNodeWriter
        | Mode::SingleNodeReaderOnly
        | Mode::SingleNodeSingleWriter
        | Mode::SingleNodeMultiWriter
        | Mode::MultiNodeReaderOnly => None,
        other => Some(format!(
            "access mode {} is not supported: a ferry volume has one writer node",
            other.as_str_name()
        )),
    })
}

/// Checks a list of capabilities: all present and well formed, all supported.
///
/// # Errors
/// INVALID_ARGUMENT when empty, malformed or unsupported.
pub fn capabilities(caps: &[VolumeCapability]) -> Result<()> {
    if caps.is_empty() {
        return Err(required("volume_capabilities"));
    }
    for c in caps {
        if let Some(reason) = capability(c)? {
            return Err(Error::InvalidArgument(reason));
        }
    }
    Ok(())
}

/// The capacity to give a volume, given the CO's range, a default, and the smallest size the
/// content needs. Sizes round up to 4 KiB when the limit allows.
///
/// # Errors
/// INVALID_ARGUMENT for negative values; OUT_OF_RANGE when the range cannot be met.
pub fn capacity(range: Option<&CapacityRange>, default: u64, at_least: u64) -> Result<u64> {
    let (req, lim) = range.map_or((0, 0), |r| (r.required_bytes, r.limit_bytes));
    if req < 0 || lim < 0 {
        return Err(Error::InvalidArgument(
            "capacity_range bytes must not be negative".into(),
        ));
    }
    let (req, lim) = (req as u64, lim as u64);
    if lim > 0 && req > lim {
        return Err(out_of_range(format!(
            "capacity_range.required_bytes {req} exceeds limit_bytes {lim}"
        )));
    }
    let mut size = if req > 0 {
        req.max(at_least)
    } else if at_least > 0 {
        at_least
    } else {
        default
    };
    if lim > 0 && size > lim {
        if req == 0 && at_least == 0 {
            size = lim;
        } else {
            return Err(out_of_range(format!(
                "the volume needs {size} bytes but limit_bytes is {lim}"
            )));
        }
    }
    let rounded = size.div_ceil(4096) * 4096;
    if lim == 0 || rounded <= lim {
        size = rounded;
    }
    Ok(size)
}

fn out_of_range(msg: String) -> Error {
    Error::Store(ferry_store::Error::OutOfRange(msg))
}

/// Volume name prefixes of the volumes ferry makes itself (a migration's imports, an
/// ApplicationClone's copies): one chunk store holds them beside provisioned volumes in one
/// name space, so no CreateVolume may take a name of this form.
pub const RESERVED_VOLUME_PREFIXES: [&str; 2] = ["ferry-import-", "ferry-clone-"];

/// Checks a CreateVolume name: not empty, and not of a form ferry keeps for its own
/// volumes ([`RESERVED_VOLUME_PREFIXES`]).
///
/// # Errors
/// INVALID_ARGUMENT saying what to change.
pub fn volume_name(name: &str) -> Result<()> {
    if name.is_empty() {
        return Err(required("name"));
    }
    if let Some(p) = RESERVED_VOLUME_PREFIXES
        .iter()
        .find(|p| name.starts_with(*p))
    {
        return Err(Error::InvalidArgument(format!(
            "volume name {name:?} starts with {p:?}, which ferry keeps for the volumes it makes \
             itself (imports and clones): give the provisioner another --volume-name-prefix"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use ferry_proto::v1::volume_capability::{AccessMode, MountVolume};

    fn range(r: i64, l: i64) -> CapacityRange {
        CapacityRange {
            required_bytes: r,
            limit_bytes: l,
        }
    }

    #[test]
    fn capacity_rules() {
        assert_eq!(capacity(None, 1 << 30, 0).unwrap(), 1 << 30);
        assert_eq!(capacity(Some(&range(1000, 0)), 1 << 30, 0).unwrap(), 4096);
        assert_eq!(
            capacity(Some(&range(1000, 1000)), 1 << 30, 0).unwrap(),
            1000
        );
        assert_eq!(capacity(Some(&range(0, 8192)), 1 << 30, 0).unwrap(), 8192);
        assert_eq!(capacity(Some(&range(0, 0)), 1 << 30, 5000).unwrap(), 8192);
        assert!(capacity(Some(&range(-1, 0)), 1, 0).is_err());
        let e = capacity(Some(&range(10, 5)), 1, 0).unwrap_err();
        assert!(matches!(e, Error::Store(ferry_store::Error::OutOfRange(_))));
        assert!(
            capacity(Some(&range(0, 4096)), 1, 8192).is_err(),
            "source larger than limit"
        );
    }

    #[test]
    fn capability_rules() {
        let mount = |fs: &str, mode: Mode| VolumeCapability {
            access_type: Some(AccessType::Mount(MountVolume {
                fs_type: fs.into(),
                ..Default::default()
            })),
            access_mode: Some(AccessMode { mode: mode as i32 }),
        };
        assert_eq!(
            capability(&mount("ext4", Mode::SingleNodeWriter)).unwrap(),
            None
        );
        assert!(
            capability(&mount("ntfs", Mode::SingleNodeWriter))
                .unwrap()
                .is_some()
        );
        assert!(
            capability(&mount("", Mode::MultiNodeMultiWriter))
                .unwrap()
                .is_some()
        );
        assert!(capability(&mount("", Mode::Unknown)).is_err());
        let no_type = VolumeCapability {
            access_type: None,
            access_mode: Some(AccessMode { mode: 1 }),
        };
        assert!(capability(&no_type).is_err());
        assert!(capabilities(&[]).is_err());
    }
}
