// Pins MetalLB (go.universe.tf/metallb) for lab/metallb/build.sh, which builds its controller from the Go
// module proxy for the side-by-side allocator bench (lab/benches/side_by_side.rs). Only the version and the
// module's checksum (go.sum) are used: build.sh compiles inside a copy of MetalLB's own module, with its own
// go.mod and go.sum, so the controller links exactly the dependencies MetalLB released it with. After
// changing the version, run `GOFLAGS=-mod=mod GOTOOLCHAIN=local go mod download go.universe.tf/metallb` here.
module purelb.rs/lab/metallb

go 1.26.0

require go.universe.tf/metallb v0.15.3
