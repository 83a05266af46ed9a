# frozen_string_literal: true

require 'divvy'

# Divvy.map, Divvy.each and their _with_index forms as a parallel-gem user
# expects them: sources that yield several values, hooks, stopping early
# with Divvy::Break, the results a failure carries, and Ctrl-C getting past
# a plain `rescue`.
RSpec.describe 'Divvy.map and Divvy.each' do
  # Appends `line` to the file `name` in `dir`; safe from several processes
  # at once (one short write in append mode).
  def log_line(dir, name, line)
    File.open(File.join(dir, name), 'a') { |file| file.puts(line) }
  end

  # The lines of the file `name` in `dir`, each split into words.
  def logged(dir, name)
    path = File.join(dir, name)
    File.exist?(path) ? File.readlines(path, chomp: true).map(&:split) : []
  end

  # Runs Ruby `code` in a new process and returns its Result; kills it
  # (and its workers) should it run past COMMAND_TIMEOUT, as a run over an
  # endless source could.
  def ruby_script(code, env: {})
    run_long_command(['ruby', '-e', code], timeout: ProcessHelpers::COMMAND_TIMEOUT, env: env)
  end

  # Starts Ruby `code` in its own process group (as a terminal would), with
  # OUT=dir in its environment and its output in dir/stdout and dir/stderr.
  # Returns the pid.
  def spawn_ruby(code, dir)
    spawn(spec_env('OUT' => dir), 'ruby', '-e', code,
          out: File.join(dir, 'stdout'), err: File.join(dir, 'stderr'), pgroup: true, chdir: ROOT)
  end

  describe 'sources that yield several values' do
    it 'gives the block every value each yielded, as Enumerable#map does' do
      expect(Divvy.map(%w[a b].each_with_index, workers: 2) { |x, i| "#{x}#{i}" }).to eq(%w[a0 b1])

      source = Object.new
      def source.each
        yield
        yield 1
        yield 1, 2
        yield [1, 2]
      end
      expect(Divvy.map(source, workers: 2) { |*values| values }).to eq([[], [1], [1, 2], [[1, 2]]])
      expect(Divvy.map(source, workers: 2) { |a, b| [a, b] }).to eq(source.to_enum.map { |a, b| [a, b] })
      expect(Divvy.map(source, workers: 2) { |a| a }).to eq(source.to_enum.map { |a| a })
    end

    it 'hands a Hash pair to |key, value| and to |pair|' do
      prices = { 'tea' => 3, 'cake' => 5 }
      expect(Divvy.map(prices, workers: 2) { |name, price| "#{name}=#{price}" }).to eq(%w[tea=3 cake=5])
      expect(Divvy.map(prices, workers: 2) { |pair| pair }).to eq([['tea', 3], ['cake', 5]])
    end

    it 'hands each_slice a slice, whole or splatted' do
      expect(Divvy.map((1..5).each_slice(2), workers: 2, &:sum)).to eq([3, 7, 5])
      expect(Divvy.map((1..5).each_slice(2), workers: 2) { |a, b| [b, a] }).to eq([[2, 1], [4, 3], [nil, 5]])
    end

    it 'hands each_with_object and each_with_index sources both values' do
      expect(Divvy.map((1..3).each_with_object([]), workers: 2) { |i, memo| memo << i }).to eq([[1], [2], [3]])
      expect(Divvy.map({ a: 1 }.each_with_index, workers: 2) { |(key, value), i| [key, value, i] }).to eq([[:a, 1, 0]])
    end

    it 'streams lazy and endless sources that yield several values' do
      pairs = (1..).lazy.each_with_index.map { |x, i| [x * 10, i] }.take_while { |_, i| i < 300 }
      expect(Divvy.map(pairs, workers: 2) { |tens, i| tens - i }).to eq((1..300).map { |x| (x * 10) - x + 1 })

      Dir.mktmpdir do |dir|
        endless = (1..).lazy.with_index.take_while { |_, i| i < 50 }
        Divvy.each(endless, workers: 2) { |x, i| File.write(File.join(dir, "#{x}-#{i}"), '') }
        expect(Dir.children(dir).sort).to eq((0...50).map { |i| "#{i + 1}-#{i}" }.sort)
      end
    end

    it 'reports a failed item as the values each yielded' do
      result = ruby_code(<<~RUBY)
        require 'divvy'
        Divvy.map(%w[a b c].each_with_index, workers: 1) { |x, i| raise ArgumentError, 'no b' if x == 'b'; i }
      RUBY
      expect(result.stderr).to include('failed performing ["b", 1]: ArgumentError: no b')
    end
  end

  describe 'map_with_index and each_with_index' do
    it 'gives the block each item and its position' do
      expect(Divvy.map_with_index(%w[x y z], workers: 2) { |item, i| "#{item}#{i}" }).to eq(%w[x0 y1 z2])
    end

    it 'packs several values into one item, as Enumerable#each_with_index does' do
      expect(Divvy.map_with_index({ a: 1, b: 2 }, workers: 2) { |(key, value), i| [key, value, i] })
        .to eq([[:a, 1, 0], [:b, 2, 1]])
      expect(Divvy.map_with_index(%w[p q].each_with_index, workers: 2) { |pair, i| pair + [i] })
        .to eq([['p', 0, 0], ['q', 1, 1]])
    end

    it 'runs every item with each_with_index and returns the enumerable' do
      Dir.mktmpdir do |dir|
        words = %w[one two three]
        expect(Divvy.each_with_index(words, workers: 2) { |w, i| File.write(File.join(dir, "#{i}-#{w}"), '') })
          .to be(words)
        expect(Dir.children(dir).sort).to eq(%w[0-one 1-two 2-three])
      end
    end

    it 'needs a block' do
      expect { Divvy.map_with_index([1]) }.to raise_error(ArgumentError, 'Divvy.map_with_index needs a block')
      expect { Divvy.each_with_index([1]) }.to raise_error(ArgumentError, 'Divvy.each_with_index needs a block')
    end
  end

  describe 'after_fork: and before_exit:' do
    it 'runs after_fork in each worker before its items, with the worker when it takes one' do
      booted = nil # set in each worker's copy of this frame
      seen = Divvy.map(1..20, workers: 2, after_fork: ->(worker) { booted = [worker.number, Process.pid] }) do
        booted == [Divvy.worker.number, Process.pid]
      end
      expect(seen).to all(be(true))
    end

    it 'takes callables of arity 0 and objects that respond to call' do
      booted = nil
      expect(Divvy.map(1..4, workers: 2, after_fork: -> { booted = :yes }) { booted }).to eq(%i[yes yes yes yes])
      hook = Struct.new(:number) do
        def call(worker) = self.number = worker.number
      end.new
      expect(Divvy.map(1..4, workers: 1, after_fork: hook) { hook.number }).to eq([1, 1, 1, 1])
    end

    it 'rejects a hook that cannot take the worker, before any fork' do
      expect { Divvy.each([1], after_fork: ->(a, b) { [a, b] }) { |i| warn i } }
        .to raise_error(Divvy::Error, /\Aafter_fork: must be a callable taking no argument or the Divvy::Worker/)
      expect { Divvy.map([1], before_exit: :close) { |i| i } }
        .to raise_error(Divvy::Error, /\Abefore_exit: must be a callable/)
    end

    # These wait on the core calling the task's before_exit(worker) in each
    # worker before it leaves.
    context 'before_exit (needs the core to call it)' do
      it 'runs once in every worker that ran, after its last item' do
        Dir.mktmpdir do |dir|
          log = ->(line) { log_line(dir, 'log', line) }
          Divvy.each(1..30, workers: 3,
                            after_fork: -> { log.call("start #{Process.pid}") },
                            before_exit: ->(worker) { log.call("exit #{Process.pid} #{worker.number}") }) do |i|
            log.call("item #{Process.pid} #{i}")
          end
          lines = logged(dir, 'log')
          starts = lines.select { |kind, _| kind == 'start' }.map { |_, pid| pid }
          exits = lines.select { |kind, _| kind == 'exit' }.map { |_, pid, _| pid }
          expect(exits.sort).to eq(starts.sort)
          expect(lines.select { |kind, _| kind == 'item' }.size).to eq(30)
          starts.each { |pid| expect(lines.select { |_, who| who == pid }.last.first).to eq('exit') }
          expect(lines.select { |kind, _| kind == 'exit' }.map(&:last).sort).to eq(%w[1 2 3])
        end
      end

      it 'runs in workers retired by max_tasks' do
        Dir.mktmpdir do |dir|
          log = ->(line) { log_line(dir, 'log', line) }
          pids = Divvy.map(1..20, workers: 2, max_tasks: 4,
                                  before_exit: -> { log.call("exit #{Process.pid}") }) { Process.pid }
          expect(pids.uniq.size).to be >= 5
          exits = logged(dir, 'log').map(&:last)
          # A replacement forked as the last items finished may have none.
          expect(exits.uniq).to eq(exits)
          expect(exits).to include(*pids.uniq.map(&:to_s))
        end
      end

      it 'runs when a drain (Ctrl-C) lets the workers go' do
        Dir.mktmpdir do |dir|
          pid = spawn_ruby(<<~RUBY, dir)
            require 'divvy'
            log = ->(line) { File.open(File.join(ENV.fetch('OUT'), 'log'), 'a') { |f| f.puts line } }
            Divvy.each((1..), workers: 3, after_fork: -> { log.("start \#{Process.pid}") },
                              before_exit: -> { log.("exit \#{Process.pid}") }) { sleep 0.01 }
          RUBY
          eventually { logged(dir, 'log').count { |kind, _| kind == 'start' } == 3 }
          Process.kill(:INT, -pid)
          expect(wait_for(pid).termsig).to eq(Signal.list['INT'])
          lines = logged(dir, 'log')
          expect(lines.select { |kind, _| kind == 'exit' }.map(&:last).sort)
            .to eq(lines.select { |kind, _| kind == 'start' }.map(&:last).sort)
        end
      end

      it "calls a task's before_exit with its worker" do
        Dir.mktmpdir do |dir|
          task = Class.new do
            include Divvy::Parallelizable
            def initialize(dir) = @dir = dir
            def dispatch = 10.times { |i| yield i }
            def perform(_) = nil
            def before_exit(worker) = File.write(File.join(@dir, worker.number.to_s), Process.pid.to_s)
          end
          master = Divvy::Master.new(task.new(dir), 2)
          master.run
          expect(Dir.children(dir).sort.to_h { |number| [number, File.read(File.join(dir, number))] })
            .to eq(master.workers.to_h { |worker| [worker.number.to_s, worker.pid.to_s] })
        end
      end
    end
  end

  # These wait on the core: a perform that raises Divvy::Break counts as
  # performed, stops dispatching, lets the items in flight finish, calls the
  # task's broke(value, *args) in the master, and Master#run returns.
  describe 'large results (read straight into the Strings returned)' do
    # Results of many shapes, several over 64 KB (read from the pipe
    # straight into a String of their own) and some around that size.
    shapes = [
      ->(i) { 'é' * (40_000 + i) },
      ->(i) { ("\x04\b[".b + i.chr) * 30_000 },
      ->(i) { 'US'.encode('US-ASCII') * (40_000 + i) },
      ->(i) { [i, 'x' * 70_000] },
      ->(i) { ['y' * 70_000, i] },
      ->(i) { { i => 'h' * 80_000 } },
      ->(i) { 'z' * ((64 * 1024) - 20 + i) }
    ]

    it 'returns each exactly, in its encoding, as a String the caller may change' do
      items = (0...(shapes.size * 4)).to_a
      expected = items.map { |i| shapes[i % shapes.size].call(i) }
      results = Divvy.map(items, workers: 2) { |i| shapes[i % shapes.size].call(i) }
      expect(results).to eq(expected)
      expect(results.grep(String).map(&:encoding)).to eq(expected.grep(String).map(&:encoding))
      expect(results.grep(String).none?(&:frozen?)).to be(true)
      expect(results.grep(String).each { |string| string << '!' }.map(&:bytesize))
        .to eq(expected.grep(String).map { |string| string.bytesize + 1 })
    end
  end

  describe 'large results lent to the pipe' do
    it 'arrive as returned, though the next item changes the String in place' do
      buffer = +''
      results = Divvy.map(0...40, workers: 2) do |i|
        # What the worker's previous item returned, changed in place.
        buffer.setbyte(0, 33) unless buffer.empty?
        buffer << ('y' * 1000)
        buffer.replace(i.to_s * 50_000)
        buffer << ('x' * (i * 1000))
      end
      expect(results).to eq((0...40).map { |i| (i.to_s * 50_000) + ('x' * (i * 1000)) })
    end
  end

  describe 'Divvy::Break (needs the core to stop on it)' do
    it 'ends an endless map early and returns the value' do
      result = ruby_script(<<~RUBY)
        require 'divvy'
        p Divvy.map((1..), workers: 2) { |i| i == 300 ? raise(Divvy::Break, [:found, i]) : i }
      RUBY
      expect(result.stdout).to eq("[:found, 300]\n"), result.stderr
    end

    it 'returns the results gathered so far when the Break has no value, or one Marshal cannot dump' do
      result = ruby_script(<<~RUBY)
        require 'divvy'
        plain = Divvy.map((1..), workers: 2) { |i| i == 300 ? raise(Divvy::Break) : i }
        undumpable = Divvy.map((1..), workers: 2) { |i| i == 300 ? raise(Divvy::Break, proc {}) : i }
        [plain, undumpable].each do |results|
          p [results.class, results[299], results.each_with_index.all? { |r, k| r.nil? || r == k + 1 }, results.compact.size.positive?]
        end
      RUBY
      expect(result.stdout).to eq("[Array, nil, true, true]\n" * 2), result.stderr
    end

    it 'lets the items in flight finish, their results landing' do
      results = Divvy.map(1..1000, workers: 2) do |i|
        sleep 0.5 if i == 1
        raise Divvy::Break if i == 2

        i
      end
      expect(results.first(2)).to eq([1, nil])
      expect(results.size).to be < 1000
    end

    it 'makes Divvy.each return the value, nil without one' do
      expect(Divvy.each(1..1000, workers: 2) { |i| raise Divvy::Break, i * 2 if i == 100 }).to eq(200)
      expect(Divvy.each(1..1000, workers: 2) { |i| raise Divvy::Break if i == 100 }).to be_nil
    end

    it 'counts the item as performed, does not retry it, and calls broke in the master with its arguments' do
      Dir.mktmpdir do |dir|
        result = ruby_script(<<~RUBY, env: { 'OUT' => dir })
          require 'divvy'
          class Finder
            include Divvy::Parallelizable
            attr_reader :broken, :done
            def initialize = (@broken = []; @done = [])
            def dispatch = (1..20_000).each { |i| yield i, "n\#{i}" }
            def perform(i, label)
              return i unless i == 100

              File.open(File.join(ENV.fetch('OUT'), 'attempts'), 'a') { |f| f.puts i }
              raise Divvy::Break, [label, Process.pid]
            end
            def completed(result, i, _) = @done << [result, i]
            def broke(value, *args) = @broken << [value.first, args, value.last != Process.pid]
          end
          task = Finder.new
          master = Divvy::Master.new(task, 2, retries: 2)
          p master.run
          p task.broken
          p [master.items_failed, master.items_retried, master.items_performed == task.done.size + 1,
             master.tasks_distributed < 20_000]
          p task.done.all? { |result, i| result == i }
        RUBY
        expect(result.stdout).to eq(%(nil\n[["n100", [100, "n100"], true]]\n[0, 0, true, true]\ntrue\n)), result.stderr
        expect(File.read(File.join(dir, 'attempts'))).to eq("100\n")
      end
    end
  end

  describe 'Divvy::TaskError#results' do
    it 'carries the results gathered before Divvy.map gave up' do
      expect { Divvy.map(1..100, workers: 2) { |i| i == 50 ? raise(KeyError, 'no 50') : i } }
        .to raise_error(Divvy::TaskError) { |error|
          expect(error.results.first(49)).to eq((1..49).to_a)
          expect(error.results[49]).to be_nil
          expect(error.results.each_with_index.all? { |r, k| r.nil? || r == k + 1 }).to be(true)
        }
    end

    it 'is nil on errors not raised by Divvy.map' do
      expect { Divvy.each(1..10, workers: 2) { |i| raise 'no' if i == 5 } }
        .to raise_error(Divvy::TaskError) { |error| expect(error.results).to be_nil }
      expect(Divvy::TaskError.new('made by hand').results).to be_nil
    end
  end

  describe 'Ctrl-C' do
    it 'gets past a plain rescue around Divvy.map and ends the script by SIGINT' do
      Dir.mktmpdir do |dir|
        pid = spawn_ruby(<<~RUBY, dir)
          require 'divvy'
          begin
            Divvy.map((1..), workers: 2) { |i| File.write(File.join(ENV.fetch('OUT'), 'busy'), '') if i == 20; sleep 0.01 }
          rescue => e
            puts "swallowed \#{e.class}"
          end
          puts 'went on'
        RUBY
        eventually { File.exist?(File.join(dir, 'busy')) }
        Process.kill(:INT, -pid)
        expect(wait_for(pid).termsig).to eq(Signal.list['INT'])
        expect(File.read(File.join(dir, 'stdout'))).to eq('')
        expect(File.read(File.join(dir, 'stderr')))
          .to match(/stopped by SIGINT after the items in flight finished: .* \(Divvy::Master::Shutdown\)/)
      end
    end

    it 'still reaches rescue Divvy::Master::Shutdown, with the signal number' do
      Dir.mktmpdir do |dir|
        pid = spawn_ruby(<<~RUBY, dir)
          require 'divvy'
          begin
            Divvy.each((1..), workers: 2) { |i| File.write(File.join(ENV.fetch('OUT'), 'busy'), '') if i == 20; sleep 0.01 }
          rescue Divvy::Master::Shutdown => e
            puts [e.class, e.signo, e.is_a?(SignalException), e.is_a?(StandardError)].inspect
          end
        RUBY
        eventually { File.exist?(File.join(dir, 'busy')) }
        Process.kill(:INT, -pid)
        expect(wait_for(pid)).to be_success
        expect(File.read(File.join(dir, 'stdout'))).to eq("[Divvy::Master::Shutdown, #{Signal.list['INT']}, true, false]\n")
      end
    end
  end
end
