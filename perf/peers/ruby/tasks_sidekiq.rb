# frozen_string_literal: true

# The Sidekiq server side of `python -m perf peers`: the no-op job, loaded by
#   sidekiq -r ./perf/peers/ruby/tasks_sidekiq.rb -q bench -c CONCURRENCY
# The Redis URL comes from $PERF_PEER_URL. The adapter starts one or several such processes; each
# reports progress as perf/peers/external.py's drain_external reads it, without a Redis key written
# per job: a thread rewrites $PERF_PEER_PROGRESS_DIR/<pid>.json = {"processed": n} every
# $PERF_PEER_PROGRESS_MS ms while the count changes (a temporary file renamed over it, so never read
# half-written); once this process alone has run $PERF_PEER_EXPECT jobs it writes
# $PERF_PEER_DONE_FILE at once; at exit (after SIGTERM's graceful stop) it writes its final count.

require "json"
require "sidekiq"

# Debian's sidekiq 6.4.1 calls Redis#sadd the way redis-rb 4.8 deprecates (a warning per call).
Redis.silence_deprecations = true

Sidekiq.configure_server do |config|
  # The pool must hold concurrency + 2 connections (Sidekiq checks); leave its size to Sidekiq.
  config.redis = { url: ENV.fetch("PERF_PEER_URL", "redis://127.0.0.1:6379/0") }
end

module PerfCount
  LOCK = Mutex.new
  WRITE_LOCK = Mutex.new # the ticker thread and at_exit write the same file
  EXPECT = Integer(ENV.fetch("PERF_PEER_EXPECT", "0"))
  PROGRESS_DIR = ENV["PERF_PEER_PROGRESS_DIR"]
  PROGRESS_SECONDS = Integer(ENV.fetch("PERF_PEER_PROGRESS_MS", "5")) / 1000.0
  @processed = 0
  @written = 0

  def self.tick
    done = LOCK.synchronize { (@processed += 1) == EXPECT }
    File.write(ENV["PERF_PEER_DONE_FILE"], "done") if done && ENV["PERF_PEER_DONE_FILE"]
  end

  def self.processed
    LOCK.synchronize { @processed }
  end

  # Rewrite this process's progress file when the count changed since the last write.
  def self.write_progress
    return unless PROGRESS_DIR

    WRITE_LOCK.synchronize do
      count = processed
      next if count == @written

      path = File.join(PROGRESS_DIR, "#{Process.pid}.json")
      File.write("#{path}.tmp", JSON.generate("processed" => count))
      File.rename("#{path}.tmp", path)
      @written = count
    end
  end

  if PROGRESS_DIR
    Thread.new do
      loop do
        sleep PROGRESS_SECONDS
        write_progress
      end
    end
  end
end

# The benchmark job: does nothing (but count).
class NoopJob
  include Sidekiq::Worker

  def perform(_payload)
    PerfCount.tick
  end
end

at_exit { PerfCount.write_progress }
