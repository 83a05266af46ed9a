# frozen_string_literal: true

# The Active Record advice in docs/FORK_SAFETY.md, tried for real: four
# workers import rows through Active Record into an SQLite file, and none
# may be lost or written twice. Needs Debian's ruby-activerecord and
# ruby-sqlite3 (bin/setup installs them); skipped without them.
RSpec.describe 'Active Record in workers (docs/FORK_SAFETY.md)' do
  # A script that imports 400 rows from 4 workers with the hooks HOOKS
  # names, then prints what the master reads back through its own
  # connection: rows, distinct numbers, lowest and highest, distinct writer
  # pids, rows the master wrote.
  def import_script
    <<~RUBY
      require 'divvy'
      require 'active_record'

      CONFIG = { adapter: 'sqlite3', database: File.join(ENV.fetch('OUT'), 'import.sqlite3'), timeout: 10_000 }.freeze
      ActiveRecord::Base.establish_connection(CONFIG)
      ActiveRecord::Schema.verbose = false
      ActiveRecord::Schema.define do
        create_table(:rows) do |t|
          t.integer :number, null: false
          t.integer :pid, null: false
        end
      end
      class Row < ActiveRecord::Base; end

      hooks = {
        'documented' => { after_fork: -> { ActiveRecord::Base.establish_connection(CONFIG) },
                          before_exit: -> { ActiveRecord::Base.connection_pool.disconnect! } },
        'none' => {},
        'bare' => { after_fork: -> { ActiveRecord::Base.establish_connection } }
      }.fetch(ENV.fetch('HOOKS'))
      begin
        Divvy.each(0...400, workers: 4, **hooks) { |number| Row.create!(number: number, pid: Process.pid) }
      rescue Divvy::Master::BootFailure => e
        puts e.class
      end
      p [Row.count, Row.distinct.count(:number), Row.minimum(:number), Row.maximum(:number),
         Row.distinct.count(:pid), Row.where(pid: Process.pid).count]
    RUBY
  end

  # Why the packages cannot be loaded, or nil when they can.
  def self.missing_packages
    return @missing_packages if defined?(@missing_packages)

    probe = Open3.capture3('ruby', '-e', "require 'active_record'; require 'sqlite3'")
    @missing_packages = probe.last.success? ? nil : probe[1].lines.first.to_s.strip
  end

  before do
    reason = self.class.missing_packages
    skip "needs Active Record and sqlite3 (apt-get install ruby-activerecord ruby-sqlite3): #{reason}" if reason
  end

  def import(hooks, dir)
    run_command(['ruby', '-e', import_script], env: { 'OUT' => dir, 'HOOKS' => hooks })
  end

  # Runs the block with a fresh directory for the database: in memory where
  # there is /dev/shm, so the fsync of each of the 400 commits costs nothing
  # (on disk they take several seconds).
  def in_tmpdir(&)
    Dir.mktmpdir('divvy-activerecord', File.writable?('/dev/shm') ? '/dev/shm' : nil, &)
  end

  it 'imports every row exactly once with the documented hooks, and the master keeps its connection' do
    in_tmpdir do |dir|
      result = import('documented', dir)
      expect(result.stdout).to eq("[400, 400, 0, 399, 4, 0]\n"), result.stderr
      expect(result.stderr).to eq('')
    end
  end

  it 'imports every row exactly once with no hook, Active Record dropping the inherited pool itself' do
    in_tmpdir do |dir|
      result = import('none', dir)
      expect(result.stdout).to eq("[400, 400, 0, 399, 4, 0]\n"), result.stderr
    end
  end

  it 'fails every boot with a bare establish_connection outside Rails, as the old advice did' do
    in_tmpdir do |dir|
      result = import('bare', dir)
      expect(result.stdout).to eq("Divvy::Master::BootFailure\n[0, 0, nil, nil, 0, 0]\n")
      expect(result.stderr).to include('failed in after_fork: ActiveRecord::AdapterNotSpecified')
    end
  end
end
