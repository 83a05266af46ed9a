# frozen_string_literal: true

require 'fileutils'

# How divvy finds its native extension outside an installed gem: a checkout
# (`ruby -Ilib`, exe/divvy) and a Bundler `path:` source load the build
# `rake compile` made, and say in one line to run it when there is none.
RSpec.describe 'loading the native extension' do
  around do |example|
    Dir.mktmpdir('divvy-loading') do |dir|
      @dir = dir
      example.run
    end
  end

  # A copy of the checkout's Ruby side with no compiled extension, as a
  # fresh clone has it. Returns its directory.
  def fresh_checkout
    copy = File.join(@dir, 'fresh')
    Dir.glob(['lib/**/*.rb', 'exe/*', 'divvy.gemspec'], base: ROOT).each do |file|
      FileUtils.mkdir_p(File.join(copy, File.dirname(file)))
      FileUtils.cp(File.join(ROOT, file), File.join(copy, file))
    end
    copy
  end

  # Runs Ruby `code` with Bundler set up from a Gemfile whose only gem is
  # divvy at `path`.
  def with_bundler_path(path, code)
    gemfile = File.join(@dir, 'Gemfile')
    File.write(gemfile, "gem 'divvy', path: #{path.inspect}\n")
    env = { 'BUNDLE_GEMFILE' => gemfile, 'RUBYLIB' => nil }
    run_command(['ruby', '-rbundler/setup', '-e', code], env: env, chdir: @dir)
  end

  let(:not_compiled) { /\A.*divvy: Ruby \d+\.\d+: the native extension is not compiled: run `rake compile` in / }

  it "loads the checkout's build for this Ruby from lib/divvy/X.Y/" do
    result = ruby_code('require "divvy"; puts $LOADED_FEATURES.grep(/divvy\.so/)')
    expect(result.stdout).to eq("#{File.join(ROOT, 'lib', 'divvy', RUBY_VERSION[/\A\d+\.\d+/], 'divvy.so')}\n")
  end

  it 'says in one line, naming rake compile, that a fresh checkout has no compiled extension' do
    copy = fresh_checkout
    example = File.join(ROOT, 'examples', 'danceparty.rb')
    result = run_command(['ruby', File.join(copy, 'exe', 'divvy'), '-n', '2', example],
                         env: { 'RUBYLIB' => File.join(copy, 'lib') })
    expect(result.status.exitstatus).to eq(1)
    expect(result.stderr.lines.size).to eq(1), result.stderr
    expect(result.stderr).to match(not_compiled).and include(copy)
  end

  it 'works from a Bundler path: source whose extension is compiled' do
    result = with_bundler_path(ROOT, 'require "divvy"; p Divvy.map(1..4, workers: 2) { |i| i * 2 }')
    expect(result.status).to be_success, result.stderr
    expect(result.stdout).to eq("[2, 4, 6, 8]\n")
  end

  it 'fails from a Bundler path: source whose extension is not compiled with the same one line' do
    copy = fresh_checkout
    result = with_bundler_path(copy, 'begin; require "divvy"; rescue LoadError => e; puts e.message; end')
    expect(result.status).to be_success, result.stderr
    expect(result.stdout.lines.size).to eq(1)
    expect(result.stdout).to match(not_compiled).and include(copy)
  end
end
