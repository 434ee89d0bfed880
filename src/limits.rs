//! Every limit the engine and the module host enforce, in one documented
//! struct (rhai's `Limits` practice). Defaults suit production and
//! simulation alike; tests and benchmarks may tighten them.

/// Limits on one call and on the scripts it runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Branches (the `callflow` module and others entering another flow) one
    /// call may take before it is ended: Kazoo's `max_branch_count`, which is
    /// what stops a callflow that branches to itself.
    pub max_branches: u32,
    /// Interrupt ticks one module invocation may use. Luau interrupts at
    /// function calls and loop back-edges, so this bounds CPU per invocation
    /// deterministically (about 70 ms of a tight loop on a 2 GHz core for the
    /// default), including loops wrapped in `pcall`.
    pub interrupts_per_invoke: u64,
    /// Bytes the Lua VM of one worker may allocate in total (all calls on that
    /// worker share it); an allocation past it fails with a memory error in
    /// the script that made it.
    pub vm_memory_bytes: usize,
    /// Bytes one module invocation may add to its worker's Lua heap (what
    /// it allocates less what is freed while it runs, its own garbage
    /// included until collected): past it the invocation ends with an
    /// error, `pcall` or not, long before one call could fill the VM that
    /// other calls share. Its garbage is collected at once.
    pub invoke_memory_bytes: usize,
    /// About how many bytes one call may keep in the host beyond its Lua
    /// heap: its trace events and its variables. What a module asks to add
    /// past it (`call:log`, `call:emit`, `call:set`, `call:on_end` data) is
    /// an error in that module, and the call goes on with `_`; the engine's
    /// own events are counted but never refused (`max_trace_events` caps
    /// them). Lua allocations are bounded per invocation
    /// (`invoke_memory_bytes`).
    pub call_memory_bytes: usize,
    /// Events one call's trace keeps; past it only `error`, `hangup` and
    /// `end` are recorded, and a `limit` event (`what=trace_events`) counts
    /// what was dropped.
    pub max_trace_events: usize,
    /// Bytes of one `call:log` message; a longer one is cut there (at a
    /// character boundary) and says how much was cut.
    pub max_log_bytes: usize,
    /// Bytes of one `call:emit` event (its fields as JSON); a larger one is
    /// an error in the module that emitted it.
    pub max_emit_bytes: usize,
    /// DTMF digits one call takes from its legs (the caller's and a bridged
    /// peer's, however they came: RFC 4733, SIP INFO, a scenario); past it
    /// digits are dropped (not recorded, buffered or heard by metaflows),
    /// and one `limit` event (`what=dtmf_digits`) says so.
    pub max_dtmf_digits: usize,
    /// Events one call takes from its caller's side besides its digits and
    /// hang-up (re-INVITEs, UPDATEs, REFERs, holds of a real leg); past it
    /// they are ignored (a hang-up still ends the call), and one `limit`
    /// event (`what=caller_events`) says so.
    pub max_caller_events: usize,
    /// Lua heap set aside for each call a worker runs: a worker takes at
    /// most three quarters of `vm_memory_bytes` divided by this (8,192 calls
    /// by default), so that the calls it admitted can still grow (a call
    /// parked in a voicemail recording holds about 18 KiB) without filling
    /// the VM they share.
    pub call_reserve_bytes: usize,
    /// Calls one worker (one Lua VM) runs at once; 0: no limit but its
    /// memory. A worker also refuses a new call while its VM is over three
    /// quarters of `vm_memory_bytes` after a collection. A refused call ends
    /// at once (`end` reason `overload`, hang-up cause `SWITCH_CONGESTION`:
    /// SIP 503); the calls running are untouched.
    pub max_calls: usize,
    /// Longest a call may last, in milliseconds of call time; a call still
    /// running then is hung up (cause `ALLOTTED_TIMEOUT`).
    pub max_call_ms: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_branches: 50,
            interrupts_per_invoke: 10_000_000,
            vm_memory_bytes: 256 << 20,
            invoke_memory_bytes: 32 << 20,
            call_memory_bytes: 16 << 20,
            max_trace_events: 20_000,
            max_log_bytes: 8 << 10,
            max_emit_bytes: 64 << 10,
            max_dtmf_digits: 10_000,
            max_caller_events: 1_000,
            call_reserve_bytes: 24 << 10,
            max_calls: 0,
            max_call_ms: 4 * 60 * 60 * 1000,
        }
    }
}

/// Limits on the documents a flows directory holds and the REST API
/// accepts: what keeps one document (or one account) from making every
/// reload, write and lookup slow or the process large. Past a limit a
/// document gets an error diagnostic that names it (in `callflow check`, a
/// reload, and as a Kazoo validation error from the API); what is over the
/// limit is not loaded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DocumentLimits {
    /// Bytes of one document file or API document; a larger file is not
    /// read past this (and not parsed).
    pub max_document_bytes: usize,
    /// Nested arrays and objects in one document (Kazoo's callflows nest
    /// about 2 per node level; real ones stay under 20).
    pub max_depth: usize,
    /// Entries of one callflow's `numbers`; past it none of them is routed.
    pub max_numbers_per_callflow: usize,
    /// Entries of one callflow's `patterns`; past it none of them is routed.
    pub max_patterns_per_callflow: usize,
    /// Numbers of all the callflows of one account; the callflows (in id
    /// order) that would take it past this are not routed.
    pub max_numbers_per_account: usize,
    /// Patterns of all the callflows of one account, counted as numbers are.
    pub max_patterns_per_account: usize,
    /// Bytes of one pattern's source.
    pub max_pattern_bytes: usize,
    /// Bytes one compiled pattern may take (the `regex` crate's
    /// `size_limit`): a real dial pattern takes 0.5 to 2 KiB, and
    /// `^[0-9]{0,300}1$` 34 KiB.
    pub max_pattern_compiled_bytes: usize,
}

impl DocumentLimits {
    /// The defaults: generous for real PBXs (tens of thousands of numbers
    /// per account), far below what slows the server down.
    pub const DEFAULT: Self = Self {
        max_document_bytes: 1 << 20,
        max_depth: 64,
        max_numbers_per_callflow: 10_000,
        max_patterns_per_callflow: 1_000,
        max_numbers_per_account: 200_000,
        max_patterns_per_account: 10_000,
        max_pattern_bytes: 512,
        max_pattern_compiled_bytes: 16 << 10,
    };
}

impl Default for DocumentLimits {
    fn default() -> Self {
        Self::DEFAULT
    }
}
