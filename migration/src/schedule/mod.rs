//! Scheduled migrations: when each policy type of a SchedulePolicy is due, and the
//! SchedulePolicy reconciler that reports a bad policy.

pub mod migration_schedule;
pub mod policy;
pub mod policy_status;
