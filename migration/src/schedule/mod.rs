//! Scheduled migrations: when each policy type of a SchedulePolicy is due.

pub mod policy;
