//! Ferry's migration controller: moves namespaces, their resources and their volumes' data to
//! a paired cluster, as a sidecar beside the CSI controller.

pub mod crd;
