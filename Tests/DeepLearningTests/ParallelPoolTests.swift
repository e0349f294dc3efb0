import CDeepLearningKernels
import Glibc
import Testing
@testable import DeepLearning

/// The kernels' fork-join pool (parallel.c) on its own: every item of every job is run
/// exactly once, by the share the documented rule gives it, whatever the thread count, and
/// whether the workers are spinning, asleep (after a pause longer than their spin), or
/// given no share (a job of fewer items than threads, or a thread count lowered between
/// jobs), and whether a job wakes sleeping workers or runs their shares itself (a short
/// job, `dlk_parallel_for_awake`). A lost or doubled share, a stale claim that runs a later job's share, or a worker
/// that misses a wake-up shows here as a wrong count or a hang.
@Suite(.serialized) struct ParallelPoolTests {
    /// One job: `visits[i]` counts the runs of item i; `shares[i]` records the share that ran
    /// it.
    struct Job {
        var visits: UnsafeMutablePointer<Int32>
        var shares: UnsafeMutablePointer<Int32>
    }

    static let task: dlk_task = { context, begin, end, thread in
        let job = context!.assumingMemoryBound(to: Job.self).pointee
        for i in Int(begin)..<Int(end) {
            job.visits[i] += 1   // shares are disjoint: no two threads write one item
            job.shares[i] = thread
        }
    }

    @Test func everyItemRunsOnceInItsShareWhateverTheThreadsDo() {
        let setting = ThreadSetting.take()
        defer { setting.release() }
        let most = 97
        let visits = UnsafeMutablePointer<Int32>.allocate(capacity: most)
        let shares = UnsafeMutablePointer<Int32>.allocate(capacity: most)
        defer { visits.deallocate(); shares.deallocate() }
        var job = Job(visits: visits, shares: shares)
        var rng = RandomGenerator(seed: 5)
        var joins: [Int32: Int] = [:]
        for round in 0..<600 {
            // Thread counts go up and down (workers left without a share), items from 1
            // (serial) to more than threads, and now and then a pause of 5 ms, longer than
            // the workers' spin, so that the next job finds them asleep.
            let threads = [2, 3, 8, 1, 5, 2][round / 100]
            Kernels.threads = threads
            if round % 50 == 49 { usleep(5_000) }
            let items = 1 + Int(rng.uniform() * Double(most - 1))
            let minimum = 1 + Int(rng.uniform() * 4)
            visits.update(repeating: 0, count: items)
            shares.update(repeating: -1, count: items)
            // Half the jobs are short ones, which wake sleeping workers only in a burst.
            let short = rng.uniform() < 0.5
            let join = withUnsafeMutablePointer(to: &job) {
                short ? dlk_parallel_for_awake(Int64(items), Int64(minimum), Self.task, $0)
                      : dlk_parallel_for(Int64(items), Int64(minimum), Self.task, $0)
            }
            joins[join, default: 0] += 1
            let used = max(1, min(threads, items / minimum))   // dlk_parallel_for's rule
            let all = (0..<items).allSatisfy { visits[$0] == 1 }
            #expect(all, "round \(round): \(threads) threads, \(items) items: \((0..<items).map { visits[$0] })")
            // Which thread ran a share may be the caller (a late worker's share), so only the
            // shares' boundaries are checked: items of one share never span two of them.
            for i in 0..<items {
                let share = (0..<used).first { i < items * ($0 + 1) / used }!
                let first = items * share / used
                #expect(shares[i] == shares[first], "round \(round): item \(i) left its share")
            }
            if used == 1 { #expect(join == Int32(DLK_JOIN_SERIAL.rawValue), "round \(round)") }
        }
        // Jobs of two threads or more reported how their shares met.
        #expect(joins.keys.contains { $0 != Int32(DLK_JOIN_SERIAL.rawValue) })
    }
}
