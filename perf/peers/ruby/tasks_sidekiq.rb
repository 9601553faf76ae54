# frozen_string_literal: true

# The Sidekiq server side of `python -m perf peers`: the no-op job, loaded by
#   sidekiq -r ./perf/peers/ruby/tasks_sidekiq.rb -q bench -c CONCURRENCY
# The Redis URL comes from $PERF_PEER_URL. Once the process has run $PERF_PEER_EXPECT jobs it
# writes $PERF_PEER_DONE_FILE (so the harness sees the end without a Redis key written per job);
# at exit (after SIGTERM's graceful stop) it writes {"processed": n} to $PERF_PEER_COUNT_FILE.

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
  EXPECT = Integer(ENV.fetch("PERF_PEER_EXPECT", "0"))
  @processed = 0

  def self.tick
    done = LOCK.synchronize { (@processed += 1) == EXPECT }
    File.write(ENV["PERF_PEER_DONE_FILE"], "done") if done && ENV["PERF_PEER_DONE_FILE"]
  end

  def self.processed
    LOCK.synchronize { @processed }
  end
end

# The benchmark job: does nothing (but count).
class NoopJob
  include Sidekiq::Worker

  def perform(_payload)
    PerfCount.tick
  end
end

at_exit do
  path = ENV["PERF_PEER_COUNT_FILE"]
  File.write(path, JSON.generate("processed" => PerfCount.processed)) if path
end
