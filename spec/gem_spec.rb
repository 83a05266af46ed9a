# frozen_string_literal: true

require 'fileutils'
require 'rubygems/package'
require 'divvy/version'

# The gem as users get it: `gem build` packages what compiling needs and
# nothing else; `gem install` into an empty GEM_HOME compiles the extension
# with cargo and installs a working `divvy`; `gem uninstall` removes it all.
RSpec.describe 'the divvy gem' do
  # Seconds `gem install` may take. Building the extension from the
  # unpacked gem recompiles the divvy crate (its path differs from the
  # checkout's); its dependencies come from the checkout's target/ cache,
  # unless that is empty.
  def install_timeout = 900

  # What the gem may contain (patterns as in File.fnmatch).
  def packaged_patterns
    %w[Cargo.toml Cargo.lock ext/**/*.{rs,toml,rb} lib/**/*.rb exe/* sig/**/*.rbs
       README.md LICENSE CHANGELOG.md docs/*.md]
  end

  before(:all) do
    @tmp = Dir.mktmpdir('divvy-gem-spec')
    @gem_file = File.join(@tmp, "divvy-#{Divvy::VERSION}.gem")
    @gem_home = File.join(@tmp, 'gem_home')
    Dir.mkdir(@gem_home)
    @build = run_long_command(['gem', 'build', 'divvy.gemspec', '-o', @gem_file], timeout: 120)
  end

  after(:all) do
    FileUtils.rm_rf(@tmp)
  end

  # Runs `command` with only the temporary GEM_HOME for gems and without
  # the checkout's lib/ on the load path, from the temporary directory.
  def in_gem_home(*command, timeout: 60)
    env = { 'RUBYLIB' => nil, 'RUBYOPT' => nil, 'BUNDLE_GEMFILE' => nil,
            'GEM_HOME' => @gem_home, 'GEM_PATH' => @gem_home,
            'CARGO_TARGET_DIR' => File.join(ROOT, 'target') }
    run_long_command(command, timeout: timeout, env: env, chdir: @tmp)
  end

  def expect_success(result)
    expect(result.status).to be_success, "exit #{result.status.inspect}\n#{result.stdout}\n#{result.stderr}"
  end

  def divvy_files_in_gem_home
    Dir.glob('{bin,gems,specifications,extensions,cache,build_info,doc}/**/*divvy*', base: @gem_home)
  end

  it 'builds from the checkout' do
    expect_success(@build)
    expect(File).to exist(@gem_file)
  end

  it 'packages what compiling needs and nothing else' do
    files = Gem::Package.new(@gem_file).contents
    expect(files).to include('Cargo.toml', 'Cargo.lock', 'ext/divvy/extconf.rb', 'ext/divvy/Cargo.toml',
                             'ext/divvy/src/lib.rs', 'lib/divvy.rb', 'lib/divvy/cli.rb', 'exe/divvy',
                             'README.md', 'LICENSE', 'CHANGELOG.md')
    expect(files.grep(%r{\A(target|spec|bench|tmp)/})).to be_empty
    expect(files.grep(/\.so\z|Makefile\z/)).to be_empty
    flags = File::FNM_PATHNAME | File::FNM_EXTGLOB
    expect(files.reject { |file| packaged_patterns.any? { |pattern| File.fnmatch?(pattern, file, flags) } }).to be_empty
  end

  it 'installs into an empty GEM_HOME, runs from there, and uninstalls without a trace' do
    install = in_gem_home('gem', 'install', '--local', '--no-document', '--install-dir', @gem_home, @gem_file,
                          timeout: install_timeout)
    expect_success(install)
    expect(File).to be_executable(File.join(@gem_home, 'bin', 'divvy'))
    build_log = File.read(Dir.glob(File.join(@gem_home, 'extensions', '**', 'gem_make.out')).fetch(0))
    manifest = File.join(@gem_home, 'gems', "divvy-#{Divvy::VERSION}", 'ext', 'divvy', 'Cargo.toml')
    expect(build_log).to include("cargo build --release --locked --manifest-path #{manifest}")

    example = File.join(ROOT, 'examples', 'danceparty.rb')
    run = in_gem_home(File.join(@gem_home, 'bin', 'divvy'), '-n', '2', example, '3')
    expect_success(run)
    lines = run.stdout.lines(chomp: true)
    expect(lines.first).to eq('Generating 3 ticket codes for the show...')
    tickets = lines.drop(1)
    expect(tickets).to all(match(/\A\s*\d+\s+\d+ \h{40}\z/))
    expect(tickets.map { |line| line.split[1].to_i }.sort).to eq([0, 1, 2])

    loaded = in_gem_home('ruby', '-e', 'require "divvy"; puts $LOADED_FEATURES.grep(/divvy\.so/)')
    expect_success(loaded)
    expect(loaded.stdout.lines(chomp: true)).to contain_exactly(start_with("#{@gem_home}/"))

    uninstall = in_gem_home('gem', 'uninstall', 'divvy', '-x', '--install-dir', @gem_home)
    expect_success(uninstall)
    expect(divvy_files_in_gem_home).to be_empty
  end
end
