# frozen_string_literal: true

require 'digest'
require 'divvy'

RSpec.describe Divvy::Master do
  # A task whose items and hooks write what they saw into `dir`.
  let(:recording_task_class) do
    Class.new do
      include Divvy::Parallelizable

      def initialize(dir, count)
        @dir = dir
        @count = count
      end

      def dispatch
        @count.times { |i| yield i }
      end

      def perform(number)
        File.write(File.join(@dir, "item-#{number}"), Process.pid.to_s)
      end

      def before_fork(worker)
        File.write(File.join(@dir, "before-#{worker.number}-#{SecureRandom.hex(4)}"), Process.pid.to_s)
      end

      def after_fork(worker)
        File.write(File.join(@dir, "after-#{worker.number}-#{Process.pid}"), [worker.pid, worker.running?].inspect)
      end
    end
  end

  describe '.new' do
    it 'makes numbered workers that have not started' do
      master = described_class.new(recording_task_class.new('/nonexistent', 0), 3)
      expect(master.workers.map(&:number)).to eq([1, 2, 3])
      expect(master.workers.map(&:pid)).to eq([nil, nil, nil])
      expect(master.workers).to all(satisfy { |worker| !worker.running? })
      expect(master.worker_count).to eq(3)
      expect(master.verbose).to be(false)
      expect(master.workers_running?).to be(false)
      expect(master.master_process?).to be(true)
      expect(master.worker_process?).to be(false)
      expect([master.tasks_distributed, master.failures, master.spawn_count]).to eq([0, 0, 0])
    end

    it 'keeps its workers alive through a garbage collection while it is made' do
      result = ruby_code(<<~RUBY)
        require 'divvy'
        class Idle; include Divvy::Parallelizable; def dispatch; end; def perform; end; end
        GC.stress = true
        master = Divvy::Master.new(Idle.new, 8)
        GC.stress = false
        GC.start
        p master.workers.map(&:number)
      RUBY
      expect(result.stdout).to eq("[1, 2, 3, 4, 5, 6, 7, 8]\n"), result.stderr
    end

    it 'takes verbose as a third argument' do
      expect(described_class.new(recording_task_class.new('/x', 0), 1, true).verbose).to be(true)
    end

    it 'rejects a worker count that is not a positive Integer' do
      task = recording_task_class.new('/x', 0)
      [0, -2, 'abc', nil, 1.5].each do |count|
        expect { described_class.new(task, count) }
          .to raise_error(Divvy::Error, /worker count must be a positive Integer, got #{Regexp.escape(count.inspect)}/)
      end
    end

    it 'rejects a task without #dispatch and #perform' do
      expect { described_class.new(Object.new, 2) }
        .to raise_error(Divvy::Error, /must respond to #dispatch and #perform/)
    end

    it 'cannot make workers by hand' do
      expect { Divvy::Worker.new }.to raise_error(NoMethodError)
    end
  end

  describe '#run in this process' do
    it 'performs every item in the workers and runs each hook in its own process' do
      Dir.mktmpdir do |dir|
        master = described_class.new(recording_task_class.new(dir, 20), 4)
        expect(master.run).to be_nil
        items = (0...20).map { |i| File.read(File.join(dir, "item-#{i}")).to_i }
        worker_pids = Dir[File.join(dir, 'after-*')].map { |path| path[/after-\d+-(\d+)/, 1].to_i }
        expect(worker_pids.size).to eq(4)
        expect(items.uniq - worker_pids).to be_empty
        expect(items).not_to include(Process.pid)
        Dir[File.join(dir, 'before-*')].each { |path| expect(File.read(path).to_i).to eq(Process.pid) }
        Dir[File.join(dir, 'after-*')].each do |path|
          pid = path[/after-\d+-(\d+)/, 1].to_i
          expect(File.read(path)).to eq([pid, true].inspect)
        end
        expect(master.workers.map(&:pid)).to match_array(worker_pids)
        expect(master.tasks_distributed).to eq(20)
        expect(master.failures).to eq(0)
        expect(master.spawn_count).to eq(4)
        expect(master.workers_running?).to be(false)
        master.workers.each do |worker|
          expect(worker.status).to be_a(Process::Status)
          expect(worker.status).to be_success
          expect(worker.running?).to be(false)
        end
      end
    end

    it 'starts every worker once even when dispatch yields fewer items than workers, or none' do
      Dir.mktmpdir do |dir|
        [0, 1].each do |count|
          master = described_class.new(recording_task_class.new(dir, count), 3)
          master.run
          expect(master.spawn_count).to eq(3)
          expect(master.workers.map(&:pid)).to all(be_a(Integer))
        end
        expect(Dir[File.join(dir, 'after-*')].size).to eq(6)
      end
    end

    it 'can run again after a run' do
      Dir.mktmpdir do |dir|
        master = described_class.new(recording_task_class.new(dir, 3), 2)
        master.run
        master.run
        expect(master.tasks_distributed).to eq(6)
        expect(master.spawn_count).to eq(4)
      end
    end

    it 'counts no respawns on a second run whose workers all ran' do
      result = ruby_code(<<~RUBY)
        require 'divvy'
        class Twice
          include Divvy::Parallelizable
          def dispatch; 3.times { |i| yield i }; end
          def perform(_); end
        end
        master = Divvy::Master.new(Twice.new, 3, true)
        2.times { master.run }
        p master.spawn_count
      RUBY
      expect(result.stdout).to eq("6\n"), result.stderr
      summaries = result.stderr.lines.grep(/performed/)
      expect(summaries.size).to eq(2)
      expect(summaries).to all(match(/0 workers respawned/))
    end

    it 'restores the signal handlers it replaced' do
      Dir.mktmpdir do |dir|
        handler = proc {}
        previous = trap(:INT, handler)
        described_class.new(recording_task_class.new(dir, 2), 2).run
        expect(trap(:INT, previous)).to be(handler)
      end
    end

    it 'refuses a second run at the same time, from another thread or a hook, and leaves the traps as they were' do
      result = ruby_code(<<~'RUBY')
        require 'divvy'
        class Slow
          include Divvy::Parallelizable
          def dispatch = 10.times { |i| yield i }
          def perform(_) = sleep(0.05)
        end
        class Nested
          include Divvy::Parallelizable
          def dispatch = yield(1)
          def perform(_) = nil
          def completed(*)
            Divvy.map([1], workers: 1) { 2 }
          rescue Divvy::Error => e
            puts "in a hook: #{e.message}"
          end
        end
        trap(:INT) { puts "the script's own INT trap" }
        first = Thread.new { Divvy::Master.new(Slow.new, 2).run }
        sleep 0.2
        begin
          Divvy::Master.new(Slow.new, 2).run
        rescue Divvy::Error => e
          puts "beside: #{e.message}"
        end
        first.join
        Divvy::Master.new(Nested.new, 1).run
        Process.kill(:INT, Process.pid)
        sleep 0.3
      RUBY
      message = 'another Divvy::Master#run is under way in this process; divvy runs one at a time'
      expect(result.stdout).to eq("beside: #{message}\nin a hook: #{message}\nthe script's own INT trap\n"), result.stderr
    end

    it 'lets other Ruby threads run while it waits (the GVL is released)' do
      task = Class.new do
        include Divvy::Parallelizable
        def dispatch = 4.times { |i| yield i }
        def perform(_) = sleep(0.3)
      end
      ticks = 0
      ticker = Thread.new { loop { ticks += 1; sleep 0.01 } } # rubocop:disable Style/Semicolon
      described_class.new(task.new, 2).run
      ticker.kill
      expect(ticks).to be > 20
    end

    it 'stops dispatching when #shutdown is called, after the items in flight' do
      task = Class.new do
        include Divvy::Parallelizable
        attr_accessor :master, :yielded

        def dispatch
          self.yielded = 0
          1000.times do |i|
            master.shutdown if i == 10
            self.yielded += 1
            yield i
          end
        end

        def perform(_) = nil
      end.new
      task.master = described_class.new(task, 2)
      expect(task.master.run).to be_nil
      expect(task.yielded).to eq(11)
      expect(task.master.tasks_distributed).to eq(10)
    end

    it 'raises Divvy::Error when called inside a worker' do
      Dir.mktmpdir do |dir|
        task = Class.new do
          include Divvy::Parallelizable
          attr_accessor :master, :dir

          def dispatch = yield(1)

          def perform(_)
            master.run
          rescue Divvy::Error => e
            File.write(File.join(dir, 'error'), e.message)
          end
        end.new
        task.dir = dir
        task.master = described_class.new(task, 1)
        task.master.run
        expect(File.read(File.join(dir, 'error'))).to eq('Divvy::Master#run called in a worker process')
      end
    end

    it 're-raises what dispatch raises after the items in flight finished' do
      Dir.mktmpdir do |dir|
        task = Class.new(recording_task_class) do
          def dispatch
            yield 1
            raise KeyError, 'dispatch broke'
          end
        end
        master = described_class.new(task.new(dir, 0), 2)
        expect { master.run }.to raise_error(KeyError, 'dispatch broke')
        expect(File.exist?(File.join(dir, 'item-1'))).to be(true)
        expect(master.workers_running?).to be(false)
      end
    end
  end

  describe 'items' do
    # Runs `divvy ARGS` with OUT naming a file in `dir` for the script to
    # write; returns the result and that file's text (nil if not written).
    def divvy_writing_out(dir, *args)
      out = File.join(dir, 'out')
      result = divvy(*args, env: { 'OUT' => out })
      [result, File.exist?(out) ? File.read(out) : nil]
    end

    it 'carries a 10 MB item whole' do
      Dir.mktmpdir do |dir|
        script = write_script(dir, 'big.rb', <<~RUBY)
          require 'digest'
          class Big
            include Divvy::Parallelizable
            def dispatch
              yield Random.new(7).bytes(10 * 1024 * 1024), :tag
            end
            def perform(blob, tag)
              File.write(ENV.fetch('OUT'), [blob.bytesize, Digest::SHA256.hexdigest(blob), tag].inspect)
            end
          end
        RUBY
        result, written = divvy_writing_out(dir, '-n', 2, script)
        expect(result.status).to be_success, result.stderr
        blob = Random.new(7).bytes(10 * 1024 * 1024)
        expect(written).to eq([blob.bytesize, Digest::SHA256.hexdigest(blob), :tag].inspect)
      end
    end

    it 'sends each large String as it was when yielded, whatever dispatch does to it afterwards' do
      Dir.mktmpdir do |dir|
        script = write_script(dir, 'reuse.rb', <<~RUBY)
          class Reuse
            include Divvy::Parallelizable
            def dispatch
              buffer = +''
              12.times do |i|
                buffer.replace(i.to_s(16) * 300_000)
                yield buffer, i
                buffer.setbyte(0, 120)
                buffer << 'tail'
              end
            end
            def perform(blob, number)
              raise 'eleven' if number == 11
              [blob.bytesize, blob.encoding.name, blob.count(number.to_s(16))]
            end
            def completed(result, blob, number)
              File.open(ENV.fetch('OUT'), 'a') { |f| f.puts([number, result, blob.bytesize].inspect) }
            end
            def failed(_error, blob, number)
              File.open(ENV.fetch('OUT'), 'a') { |f| f.puts([:failed, number, blob.bytesize, blob[0]].inspect) }
            end
          end
        RUBY
        result, written = divvy_writing_out(dir, '-n', 2, script)
        expect(result.status.exitstatus).to eq(1), result.stderr
        expected = (0..10).map { |i| [i, [300_000, 'US-ASCII', 300_000], 300_000].inspect }
        expected << [:failed, 11, 300_000, 'b'].inspect
        expect(written.lines(chomp: true)).to match_array(expected)
      end
    end

    it 'delivers large items of every shape exactly, as Strings the worker may change' do
      Dir.mktmpdir do |dir|
        script = write_script(dir, 'shapes.rb', <<~RUBY)
          require 'digest'
          ITEMS = [
            ['é' * 100_000],
            ['b'.b * 100_000],
            ['US'.encode('US-ASCII') * 40_000],
            [:sym, ['x' * 70_000, 1]],
            [{ key: 'h' * 80_000 }],
            ['a' * 70_000, 'z' * 70_000],
            ['w' * 70_000, nil]
          ].freeze
          class Shapes
            include Divvy::Parallelizable
            def dispatch
              ITEMS.each do |args|
                record(:sent, Digest::SHA256.hexdigest(Marshal.dump(args)), args.first.is_a?(String))
                yield(*args)
              end
            end
            def perform(*args)
              digest = Digest::SHA256.hexdigest(Marshal.dump(args))
              first = args.first
              record(:got, digest, first.is_a?(String) && !first.frozen? && (first << '!').end_with?('!'))
            end
            def record(*line)
              File.open(ENV.fetch('OUT'), 'a') { |f| f.puts(line.inspect) }
            end
          end
        RUBY
        result, written = divvy_writing_out(dir, '-n', 2, script)
        expect(result.status).to be_success, result.stderr
        sent, got = %w[sent got].map do |side|
          written.lines(chomp: true).filter_map do |line|
            line.delete_prefix("[:#{side}, ") if line.start_with?("[:#{side}, ")
          end
        end
        expect(sent.size).to eq(7)
        expect(got).to match_array(sent)
      end
    end

    it 'passes exactly the arguments dispatch yielded, arity included' do
      Dir.mktmpdir do |dir|
        script = write_script(dir, 'arity.rb', <<~RUBY)
          class Arity
            include Divvy::Parallelizable
            def dispatch
              yield
              yield 1
              yield 1, 'two'
              yield [1, 'two']
              yield({ a: 1 })
              yield nil
            end
            def perform(*args)
              File.open(ENV.fetch('OUT'), 'a') { |f| f.puts(args.inspect) }
            end
          end
        RUBY
        result, written = divvy_writing_out(dir, '-n', 1, script)
        expect(result.status).to be_success, result.stderr
        expect(written.lines(chomp: true))
          .to eq(['[]', '[1]', '[1, "two"]', '[[1, "two"]]', '[{:a=>1}]', '[nil]'])
      end
    end

    it 'delivers every kind of item exactly as Marshal would' do
      Dir.mktmpdir do |dir|
        script = write_script(dir, 'kinds.rb', <<~'RUBY')
          class Kinds
            include Divvy::Parallelizable
            class Tagged < String; end

            def self.items
              shared = 'shared'
              with_ivar = +'ivar'
              with_ivar.instance_variable_set(:@note, 1)
              [
                [0], [1], [122], [123], [-124], [256], [-257], [2**30 - 1], [-(2**30)], [2**30], [2**64],
                [nil, true, false], ['utf-8 é'], ['binary'.b], ['ascii'.encode('US-ASCII')],
                ['latin'.encode('ISO-8859-1')], [:sym, :sym, 'x', 'y'], [:"é"], [[1, [2, [3]]], 'z'],
                [shared, shared], [with_ivar], [Tagged.new('sub')], [1.5], [{ a: 1 }], ['a' * 70_000],
                [[]], []
              ]
            end

            def dispatch
              self.class.items.each_with_index { |item, index| yield index, *item }
            end

            def perform(index, *item)
              File.binwrite(File.join(ENV.fetch('OUT'), index.to_s), Marshal.dump(item))
            end
          end
        RUBY
        result = divvy('-n', 2, script, env: { 'OUT' => dir })
        expect(result.status).to be_success, result.stderr
        load script
        Kinds.items.each_with_index do |item, index|
          expect(File.binread(File.join(dir, index.to_s))).to eq(Marshal.dump(item)), item.inspect[0, 80]
        end
      end
    end

    it 'runs a divvy 1.1 task that defines #process instead of #perform' do
      Dir.mktmpdir do |dir|
        script = write_script(dir, 'old.rb', <<~RUBY)
          class OldStyle
            include Divvy::Parallelizable
            def dispatch; 3.times { |i| yield i }; end
            def process(i); puts "processed \#{i}"; end
          end
        RUBY
        result = divvy('-n', 2, script)
        expect(result.status).to be_success, result.stderr
        expect(result.stdout.lines).to match_array(["processed 0\n", "processed 1\n", "processed 2\n"])
      end
    end
  end

  describe 'the manual runner' do
    it 'runs the dance party from Ruby' do
      result = ruby_code(<<~RUBY)
        require 'digest'
        require 'divvy'
        require './examples/danceparty'
        task = DanceParty.new
        master = Divvy::Master.new(task, 10)
        master.run
        warn [master.tasks_distributed, master.failures, master.spawn_count].inspect
      RUBY
      expect(result.status).to be_success, result.stderr
      expect(result.stdout.lines.size).to eq(11)
      expect(result.stderr).to eq("[10, 0, 10]\n")
    end
  end

  describe 'workers never unwind the master' do
    it 'runs no ensure block or at_exit handler of the master in a worker' do
      result = ruby_code(<<~RUBY)
        require 'digest'
        require 'divvy'
        require 'tmpdir'
        class Quick
          include Divvy::Parallelizable
          def dispatch; 6.times { |i| yield i }; end
          def perform(i); end
        end
        at_exit { puts "at_exit in \#{Process.pid}" }
        kept = nil
        Dir.mktmpdir do |dir|
          kept = dir
          begin
            Divvy::Master.new(Quick.new, 3).run
          ensure
            puts "ensure in \#{Process.pid}"
          end
          puts "dir kept: \#{File.directory?(dir)}"
        end
        puts "dir removed: \#{!File.exist?(kept)}"
        puts "master \#{Process.pid}"
      RUBY
      expect(result.status).to be_success, result.stderr
      master_pid = result.stdout[/master (\d+)/, 1]
      expect(result.stdout.scan(/ensure in (\d+)/).flatten).to eq([master_pid])
      expect(result.stdout.scan(/at_exit in (\d+)/).flatten).to eq([master_pid])
      expect(result.stdout).to include("dir kept: true\n", "dir removed: true\n")
    end
  end

  describe 'failures' do
    it 'raises BootFailure when workers die in after_fork' do
      result = ruby_code(<<~RUBY)
        require 'digest'
        require 'divvy'
        class NoBoot
          include Divvy::Parallelizable
          def dispatch; 5.times { |i| yield i }; end
          def perform(i); end
          def after_fork(_); exit!(3); end
        end
        begin
          Divvy::Master.new(NoBoot.new, 2).run
        rescue Divvy::Master::BootFailure => e
          puts "BootFailure: \#{e.message}"
        end
      RUBY
      expect(result.stdout).to match(/\ABootFailure: workers failed to boot: \d+ in a row died before they were ready.*exited with status 3/)
    end

    it 'exits 1 from the command when workers cannot boot' do
      Dir.mktmpdir do |dir|
        script = write_script(dir, 'noboot.rb', <<~RUBY)
          class NoBoot
            include Divvy::Parallelizable
            def dispatch; 5.times { |i| yield i }; end
            def perform(i); end
            def after_fork(_); raise 'no database'; end
          end
        RUBY
        result = divvy('-n', 2, script)
        expect(result.exitstatus).to eq(1)
        expect(result.stderr).to match(/worker 1 \(pid \d+\) failed in after_fork: RuntimeError: no database/)
        expect(result.stderr.lines.last).to match(/\Adivvy: workers failed to boot/)
      end
    end

    it 'replaces a worker killed with SIGKILL mid-run and reports the item it held' do
      Dir.mktmpdir do |dir|
        script = write_script(dir, 'killed.rb', <<~RUBY)
          class Killed
            include Divvy::Parallelizable
            def dispatch; 12.times { |i| yield i }; end
            def perform(i)
              Process.kill(:KILL, Process.pid) if i == 5
              sleep 0.05 # leaves items to do after the kill, so the worker is replaced
              File.write(File.join(ENV.fetch('OUT'), "item-\#{i}"), Process.pid.to_s)
            end
          end
        RUBY
        result = divvy('-v', '-n', 3, script, env: { 'OUT' => dir })
        expect(result.exitstatus).to eq(1)
        expect(result.stderr).to match(/divvy: worker \d \(pid \d+\) died by SIGKILL while performing \[5\]/)
        expect(result.stderr.scan(/started/).size).to eq(4)
        done = Dir[File.join(dir, 'item-*')].map { |path| path[/item-(\d+)/, 1].to_i }
        expect(done).to match_array((0...12).to_a - [5])
      end
    end

    it 'counts a failed item and carries on in the same worker' do
      result = ruby_code(<<~RUBY)
        require 'digest'
        require 'divvy'
        class SomeFail
          include Divvy::Parallelizable
          def dispatch; 10.times { |i| yield i }; end
          def perform(i); raise "odd \#{i}" if i.odd?; end
        end
        master = Divvy::Master.new(SomeFail.new, 2)
        master.run
        puts [master.failures, master.spawn_count, master.tasks_distributed].inspect
      RUBY
      expect(result.stdout).to eq("[5, 2, 10]\n")
      expect(result.stderr.lines.grep(/failed performing \[\d\]: RuntimeError: odd \d/).size).to eq(5)
      expect(result.stderr.lines.last).to match(/\Adivvy: 5 performed, 5 failed, 0 retried, 0 workers respawned in \d+\.\d\ds\n\z/)
    end
  end
end
