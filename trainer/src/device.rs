//! Which device this worker trains on, and what it reports.
use cairn_domain::Device as Requested;
use tch::{Cuda, Device};

/// The device a worker has: CUDA when libtorch sees a GPU, else the CPU.
pub fn available() -> Device {
    if Cuda::is_available() { Device::Cuda(0) } else { Device::Cpu }
}

/// A short description for the workers table and logs, e.g. `cuda:0 (1 GPU)` or `cpu`.
pub fn describe(device: Device) -> String {
    match device {
        Device::Cuda(index) => format!("cuda:{index} ({} GPU)", Cuda::device_count()),
        _ => "cpu".to_owned(),
    }
}

/// The device a run asked for, given what this worker has.
pub fn for_run(requested: Requested, available: Device) -> Result<Device, String> {
    match (requested, available) {
        (Requested::Auto, device) => Ok(device),
        (Requested::Cpu, _) => Ok(Device::Cpu),
        (Requested::Cuda, Device::Cuda(index)) => Ok(Device::Cuda(index)),
        (Requested::Cuda, _) => Err("the run asks for device `cuda` but this worker has no CUDA GPU".to_owned()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn libtorch_cuda_is_loaded_whenever_libtorch_ships_it() {
        // The build keeps libtorch.so linked, and it pulls libtorch_cuda.so in; without that
        // CUDA silently reports unavailable on a GPU machine.
        let lib_dir = std::path::Path::new(env!("CAIRN_LIBTORCH_LIB"));
        if lib_dir.join("libtorch_cuda.so").exists() {
            let maps = std::fs::read_to_string("/proc/self/maps").expect("maps");
            assert!(maps.contains("libtorch_cuda.so"), "libtorch_cuda.so is not mapped");
        }
        assert_eq!(describe(Device::Cpu), "cpu");
    }

    #[test]
    fn a_cuda_run_on_a_cpu_worker_is_refused() {
        assert_eq!(for_run(Requested::Auto, Device::Cpu), Ok(Device::Cpu));
        assert_eq!(for_run(Requested::Cpu, Device::Cuda(0)), Ok(Device::Cpu));
        assert!(for_run(Requested::Cuda, Device::Cpu).is_err());
    }
}
