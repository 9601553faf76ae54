# frozen_string_literal: true

# The Sidekiq producer side of `python -m perf peers` (driven by perf/peers/adapters/sidekiq_peer.py).
#
#   ruby sidekiq_bench.rb single    URL JOBS THREADS
#   ruby sidekiq_bench.rb batch     URL JOBS BATCH THREADS
#   ruby sidekiq_bench.rb fill      URL JOBS
#   ruby sidekiq_bench.rb open-loop URL RATE SECONDS THREADS
#
# Each prints one JSON line on stdout. Timing only: the Python adapter turns the raw latencies
# (microseconds, "latencies_us") into percentiles with the same code (and, for the open loop, the
# same HDR histogram) as every other peer's. Jobs are pushed as a class name ("NoopJob", defined
# in tasks_sidekiq.rb for the server) to the "bench" queue with the ~100-byte payload of
# perf/peers/base.py's payload(), from THREADS threads sharing Sidekiq's client connection pool
# (sized to THREADS, so no thread waits for a connection).

require "json"
require "sidekiq"
require "sidekiq/api"

# Debian's sidekiq 6.4.1 calls Redis#sadd the way redis-rb 4.8 deprecates: without this, every push
# prints a deprecation warning (a stderr write per job that is not Sidekiq's own cost).
Redis.silence_deprecations = true

QUEUE = "bench"
KLASS = "NoopJob"

def payload(i)
  { "n" => i, "to" => format("user-%08d@example.com", i), "subject" => "Welcome aboard", "body" => "x" * 24 }
end

def now
  Process.clock_gettime(Process::CLOCK_MONOTONIC)
end

def setup(url, pool_size)
  Sidekiq.configure_client { |config| config.redis = { url: url, size: pool_size } }
  Sidekiq.logger.level = Logger::WARN
end

def push(i)
  Sidekiq::Client.push("class" => KLASS, "queue" => QUEUE, "args" => [payload(i)])
end

# Run `threads` threads, each taking work from `source` (a thread-safe callable returning nil at
# the end) and handing it to the block.
def in_threads(threads, source)
  Array.new(threads) do
    Thread.new do
      while (item = source.call)
        yield item
      end
    end
  end.each(&:join)
end

def single(url, jobs, threads)
  setup(url, threads)
  push(0) # warm-up: the connection is open
  latencies = Array.new(jobs)
  # A counter under a lock (an Enumerator's #next cannot be shared between threads).
  counter = 0
  lock = Mutex.new
  source = -> { lock.synchronize { counter += 1 if counter < jobs } }
  start = now
  in_threads(threads, source) do |i|
    t0 = now
    push(i)
    latencies[i - 1] = ((now - t0) * 1e6).round
  end
  { "jobs" => jobs, "seconds" => now - start, "latencies_us" => latencies }
end

def bulk_parts(jobs, batch)
  (0...jobs).step(batch).map { |s| (s...[jobs, s + batch].min).map { |i| [payload(i)] } }
end

def batch(url, jobs, batch, threads)
  setup(url, threads)
  push(0)
  parts = bulk_parts(jobs, batch)
  queue = Queue.new
  parts.each { |p| queue << p }
  queue.close
  start = now
  in_threads(threads, -> { queue.pop }) do |part|
    Sidekiq::Client.push_bulk("class" => KLASS, "queue" => QUEUE, "args" => part)
  end
  { "jobs" => parts.sum(&:size), "seconds" => now - start }
end

def fill(url, jobs)
  setup(url, 1)
  bulk_parts(jobs, 1000).each { |part| Sidekiq::Client.push_bulk("class" => KLASS, "queue" => QUEUE, "args" => part) }
  { "jobs" => jobs, "waiting" => Sidekiq::Queue.new(QUEUE).size }
end

# `rate` pushes per second for `seconds`, handed on a fixed schedule by this thread to a pool of
# `threads` threads; latency counts from each push's scheduled time, so time spent waiting for a
# free thread is counted too (no coordinated omission). Kernel#sleep is precise to tens of
# microseconds here.
def open_loop(url, rate, seconds, threads)
  setup(url, threads)
  push(0)
  total = (rate * seconds).to_i
  latencies = Array.new(total)
  queue = Queue.new
  workers = Array.new(threads) do
    Thread.new do
      while (item = queue.pop)
        i, scheduled = item
        push(i)
        latencies[i] = [1, ((now - scheduled) * 1e6).round].max
      end
    end
  end
  start = now + 0.05
  total.times do |i|
    scheduled = start + i / rate
    delay = scheduled - now
    sleep(delay) if delay.positive?
    queue << [i, scheduled]
  end
  queue.close
  workers.each(&:join)
  { "offered_per_s" => rate, "seconds" => now - start, "latencies_us" => latencies }
end

command, url, *rest = ARGV
result =
  case command
  when "single" then single(url, Integer(rest[0]), Integer(rest[1]))
  when "batch" then batch(url, Integer(rest[0]), Integer(rest[1]), Integer(rest[2]))
  when "fill" then fill(url, Integer(rest[0]))
  when "open-loop" then open_loop(url, Float(rest[0]), Float(rest[1]), Integer(rest[2]))
  else
    warn "unknown command #{command.inspect}: one of single, batch, fill, open-loop"
    exit 2
  end
puts JSON.generate(result)
