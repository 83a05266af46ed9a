# frozen_string_literal: true

require 'divvy'

# Results, Divvy.map/each, Divvy.worker, process titles, worker recycling,
# resizing with TTIN/TTOU, and shards.
RSpec.describe 'beyond the original' do
  describe 'results' do
    it 'brings each return value to the completed hook in the master' do
      result = ruby_code(<<~RUBY)
        require 'divvy'
        class Squares
          include Divvy::Parallelizable
          attr_reader :seen
          def initialize = @seen = []
          def dispatch = 50.times { |i| yield i, "n\#{i}" }
          def perform(number, label) = [number * number, label, Process.pid]
          def completed(result, number, label)
            @seen << [result, number, label, Process.pid]
          end
        end
        task = Squares.new
        Divvy::Master.new(task, 3).run
        ok = task.seen.all? { |(square, label, pid), number, name, master| square == number**2 && label == name && pid != master && master == Process.pid }
        p [task.seen.size, task.seen.map { |row| row[1] }.sort == (0...50).to_a, ok]
      RUBY
      expect(result.stdout).to eq("[50, true, true]\n"), result.stderr
    end

    it 'fails an item whose result Marshal cannot dump' do
      result = ruby_code(<<~RUBY)
        require 'divvy'
        class Procs
          include Divvy::Parallelizable
          def dispatch = yield(1)
          def perform(_) = proc {}
          def completed(*) = raise('not called')
          def failed(error, *) = puts("\#{error.remote_class}: \#{error.remote_message}")
        end
        Divvy::Master.new(Procs.new, 1).run
      RUBY
      expect(result.stdout).to eq("TypeError: the result of perform cannot be marshalled: no _dump_data is defined for class Proc\n")
    end
  end

  describe 'Divvy.map and Divvy.each' do
    it 'returns 10,000 results in input order, with the locals the block captured' do
      factor = 3
      results = Divvy.map(1..10_000, workers: 2) { |i| i * factor }
      expect(results).to eq((1..10_000).map { |i| i * 3 })
    end

    it 'streams a lazy endless source with each' do
      Dir.mktmpdir do |dir|
        source = (1..).lazy.map { |i| i * 2 }.take_while { |i| i <= 200 }
        expect(Divvy.each(source, workers: 2) { |i| File.write(File.join(dir, i.to_s), '') }).to be(source)
        expect(Dir.children(dir).map(&:to_i).sort).to eq((1..100).map { |i| i * 2 })
      end
    end

    it 'stops at a final failure and raises the first, with the others attached' do
      expect do
        Divvy.map(1..40, workers: 2, retries: 1) { |i| i % 10 == 0 ? raise(KeyError, "no #{i}") : i }
      end.to raise_error(Divvy::TaskError) { |error|
        expect(error.remote_class).to eq('KeyError')
        expect(error.attempts).to eq(2)
        expect(([error] + error.others).map(&:remote_message)).to all(match(/\Ano \d+0\z/))
      }
    end

    it 'needs a block' do
      expect { Divvy.map([1]) }.to raise_error(ArgumentError, 'Divvy.map needs a block')
    end
  end

  describe 'Divvy.worker' do
    it 'is the current worker inside a worker and nil in the master' do
      seen = Divvy.map(1..4, workers: 2) { [Divvy.worker.number, Divvy.worker.pid == Process.pid] }
      expect(seen.map(&:first)).to all(be_between(1, 2))
      expect(seen.map(&:last)).to all(be(true))
      expect(Divvy.worker).to be_nil
    end
  end

  describe 'progress' do
    it 'draws a bar on a terminal, with worker output printed whole above it' do
      require 'pty'
      code = <<~RUBY
        require 'divvy'
        Divvy.each(1..30, workers: 2, progress: true) { |i| sleep 0.02; puts "item \#{i}" }
      RUBY
      output = +''
      PTY.spawn(spec_env, 'ruby', '-e', code) do |reader, _writer, pid|
        Timeout.timeout(ProcessHelpers::COMMAND_TIMEOUT) do
          loop { output << reader.readpartial(4096) }
        rescue Errno::EIO, EOFError
          nil # the child closed the terminal
        end
        Process.wait(pid)
      end
      lines = output.force_encoding('UTF-8').split(/\r\n|\r|\n/).map { |line| line.gsub(/\e\[[0-9;]*[A-Za-z]/, '') }
      expect(lines.grep(/\Aitem \d+\z/).map { |line| line[/\d+/].to_i }.sort).to eq((1..30).to_a)
      expect(lines.reject(&:empty?).last).to match(%r{30/30 done, 0 failed, [\d.]+/s, \d+s elapsed\s*\z})
      expect(output).to include("\e[2K")
    end

    # Runs Ruby `code` on a terminal `width` columns wide, and returns the
    # rows left on its screen (scrollback included), blank ones dropped.
    def screen_after(code, width:)
      timeout = ProcessHelpers::COMMAND_TIMEOUT
      output = TerminalScreen.run(spec_env, ['ruby', '-e', code], width: width, timeout: timeout)
      TerminalScreen.new(width).play(output).rows.reject(&:empty?)
    end

    it 'holds a line a worker leaves unfinished until it ends, or the worker has no item left' do
      code = <<~RUBY
        require 'divvy'
        Divvy.each(1..16, workers: 2, progress: true) do |i|
          $stdout.sync = true
          print "<\#{i}"
          sleep 0.03
          print '>'
          sleep 0.01
          puts if i % 4 == 0 # the other items leave their line unfinished
        end
        Divvy.each([1], workers: 1, progress: true) { print 'dots...' }
      RUBY
      rows = screen_after(code, width: 80)
      bar_rows = rows.grep(/done/)
      expect(bar_rows.size).to eq(2), rows.join("\n")
      expect(bar_rows.first).to match(%r{16/16 done, 0 failed})
      output_rows = rows - bar_rows
      expect(output_rows.last).to eq('dots...')
      expect(output_rows[0...-1]).to all(match(/\A(<\d+>)+\z/)), rows.join("\n")
      expect(output_rows.join.scan(/<(\d+)>/).flatten.map(&:to_i).sort).to eq((1..16).to_a)
    end

    [30, 40, 80, 120].each do |width|
      it "fits the line to a terminal #{width} columns wide, and ends it without an ETA" do
        code = <<~RUBY
          require 'divvy'
          Divvy.each(1..20, workers: 2, progress: true) { |i| sleep 0.02; puts "item \#{i}" }
          Divvy.each((1..12).lazy.select { true }, workers: 2, progress: true) { |i| sleep 0.02; puts "lazy \#{i}" }
        RUBY
        rows = screen_after(code, width: width)
        bar_rows = rows.grep(/done/)
        expect(bar_rows.size).to eq(2), rows.join("\n")
        expect(bar_rows.first).to match(%r{20/20 done, 0 failed})
        expect(bar_rows.last).to match(/12 done, 0 failed/)
        expect(bar_rows).to all(satisfy { |row| row.length <= width })
        expect(rows.join).not_to include('ETA')
        expect((rows - bar_rows).sort).to eq(((1..20).map { |i| "item #{i}" } + (1..12).map { |i| "lazy #{i}" }).sort)
      end
    end

    it 'prints plain lines when stderr is not a terminal' do
      result = divvy('--progress', '-n', 2, File.join(ROOT, 'examples', 'danceparty.rb'), 4)
      expect(result.status).to be_success
      expect(result.stderr).to match(%r{\Adivvy: 4 done, 0 failed, [\d.]+/s, \d+s elapsed\n\z})
      expect(result.stdout.lines.size).to eq(5)
    end
  end

  describe 'process titles' do
    it 'says who is who' do
      Dir.mktmpdir do |dir|
        script = write_script(dir, 'titled.rb', <<~RUBY)
          class Titled
            include Divvy::Parallelizable
            def total = 4
            def dispatch = 4.times { |i| yield i }
            def perform(i)
              sleep 0.6 if i == 3
              File.write(File.join(ENV.fetch('OUT'), "worker-\#{i}"), File.read('/proc/self/cmdline'))
            end
            def completed(_, i)
              File.write(File.join(ENV.fetch('OUT'), 'master'), File.read('/proc/self/cmdline')) if i == 3
            end
          end
        RUBY
        expect(divvy('-n', 2, script, env: { 'OUT' => dir }).status).to be_success
        expect(File.read(File.join(dir, 'worker-0'))).to start_with('divvy worker ').and include(': titled.rb')
        expect(File.read(File.join(dir, 'master'))).to match(%r{\Adivvy master: titled.rb \(\d/4 done\)})
      end
    end
  end

  describe 'long-lived pools' do
    it 'compacts a heap of 100,000 live objects or more before the first fork, unless DIVVY_COMPACT=0' do
      result = ruby_code(<<~RUBY)
        require 'divvy'
        counts = [GC.stat(:compact_count)]
        Divvy.each([1], workers: 1) {} # a small heap: not compacted
        counts << GC.stat(:compact_count)
        kept = Array.new(150_000) { |i| "object \#{i}" }
        Divvy.each([1], workers: 1) {}
        counts << GC.stat(:compact_count)
        ENV['DIVVY_COMPACT'] = '0'
        Divvy.each([1], workers: 1) {}
        counts << GC.stat(:compact_count)
        p [counts.each_cons(2).map { |a, b| b - a }, kept.size]
      RUBY
      expect(result.stdout).to eq("[[0, 1, 0], 150000]\n")
    end

    it 'retires a worker after max_tasks items' do
      result = ruby_code(<<~RUBY)
        require 'divvy'
        pids = Divvy.map(1..20, workers: 2, max_tasks: 5, verbose: true) { Process.pid }
        p [pids.size, pids.tally.values.max <= 5, pids.uniq.size >= 4]
      RUBY
      expect(result.stdout).to eq("[20, true, true]\n")
      expect(result.stderr).to include('retires after 5 items')
    end

    it 'replaces a worker whose memory passes max_memory' do
      result = ruby_code(<<~RUBY)
        require 'divvy'
        pids = Divvy.map(1..6, workers: 1, max_memory: 100, verbose: true) do
          ($ballast ||= []) << ('x' * 60 * 1024 * 1024)
          Process.pid
        end
        p [pids.size, pids.uniq.size >= 3]
      RUBY
      expect(result.stdout).to eq("[6, true]\n"), result.stderr
      expect(result.stderr).to match(/worker 1 \(pid \d+\) retires: \d+ MB resident, over 100 MB/)
    end

    it 'adds a worker on TTIN and removes one on TTOU' do
      result = ruby_code(<<~RUBY)
        require 'divvy'
        class Slow
          include Divvy::Parallelizable
          def dispatch = 40.times { |i| yield i }
          def perform(_) = sleep(0.1)
        end
        master = Divvy::Master.new(Slow.new, 2)
        counts = []
        watcher = Thread.new do
          sleep 0.4
          Process.kill(:TTIN, Process.pid)
          sleep 0.4
          counts << master.workers.count(&:running?)
          Process.kill(:TTOU, Process.pid)
          sleep 0.2 # signals of one kind do not queue: one at a time
          Process.kill(:TTOU, Process.pid)
          sleep 0.6
          counts << master.workers.count(&:running?)
        end
        master.run
        watcher.join
        p [counts, master.items_performed, master.worker_count]
      RUBY
      expect(result.stdout).to eq("[[3, 1], 40, 1]\n"), result.stderr
    end
  end

  describe 'shards' do
    it 'covers every item exactly once across N shards' do
      Dir.mktmpdir do |dir|
        script = write_script(dir, 'sharded.rb', <<~RUBY)
          class Sharded
            include Divvy::Parallelizable
            def dispatch = 100.times { |i| yield i }
            def perform(i) = File.open(File.join(ENV.fetch('OUT'), 'done'), 'a') { |f| f.puts i }
          end
        RUBY
        3.times do |shard|
          expect(divvy('-n', 2, '--shard', "#{shard}/3", script, env: { 'OUT' => dir }).status).to be_success
        end
        expect(File.readlines(File.join(dir, 'done')).map(&:to_i).sort).to eq((0...100).to_a)
      end
    end

    it 'rejects a bad shard' do
      task = Class.new { include Divvy::Parallelizable }.new
      expect { Divvy::Master.new(task, 1, shard: [3, 3]) }.to raise_error(Divvy::Error, /shard must be \[index, count\]/)
      expect(divvy('--shard', '2', File.join(ROOT, 'examples', 'danceparty.rb')).exitstatus).to eq(2)
    end
  end
end
